from billing_runtime.migrations import run_env
from notify.brand import models as brand_models  # noqa: F401
from notify.contact import models as contact_models  # noqa: F401
from notify.db import SCHEMA, metadata
from notify.delivery import models as delivery_models  # noqa: F401
from notify.webhook import models as webhook_models  # noqa: F401

run_env(metadata, SCHEMA)
