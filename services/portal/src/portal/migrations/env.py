from billing_runtime.migrations import run_env
from portal.db import SCHEMA, metadata

run_env(metadata, SCHEMA)
