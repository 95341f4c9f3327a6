from usage_ingest.ingest import models  # noqa: F401
