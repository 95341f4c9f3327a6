"""Rating's catalogue as usage-ingest knows it (from `ProductPublished`): which products exist for
a partner, and which take credits. The batch path asks it once per batch (`service.refusals`)."""

from usage_ingest.catalogue import models  # noqa: F401,E402
