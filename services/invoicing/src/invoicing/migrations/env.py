from billing_runtime.migrations import run_env
from invoicing import models  # noqa: F401
from invoicing.db import SCHEMA, metadata

run_env(metadata, SCHEMA)
