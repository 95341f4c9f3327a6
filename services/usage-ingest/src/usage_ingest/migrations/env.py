from billing_runtime.migrations import run_env
from usage_ingest.db import SCHEMA, metadata
from usage_ingest.ingest import models  # noqa: F401

run_env(metadata, SCHEMA)
