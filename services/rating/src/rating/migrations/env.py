from billing_runtime.migrations import run_env
from rating.billrun import models as billrun_models  # noqa: F401
from rating.catalogue import models as catalogue_models  # noqa: F401
from rating.db import SCHEMA, metadata
from rating.discount import models as discount_models  # noqa: F401
from rating.subscription import models as subscription_models  # noqa: F401

run_env(metadata, SCHEMA)
