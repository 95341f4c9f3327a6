from billing_runtime.migrations import run_env
from usage_ingest.catalogue import models as catalogue_models  # noqa: F401
from usage_ingest.db import SCHEMA, metadata
from usage_ingest.ingest import models  # noqa: F401

run_env(metadata, SCHEMA)
