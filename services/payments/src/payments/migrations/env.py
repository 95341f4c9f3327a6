from billing_runtime.migrations import run_env
from payments.banking import models as banking_models  # noqa: F401
from payments.collection import models as collection_models  # noqa: F401
from payments.db import SCHEMA, metadata
from payments.invoice import models as invoice_models  # noqa: F401
from payments.methods import models as methods_models  # noqa: F401
from payments.payment import models as payment_models  # noqa: F401
from payments.providers import models as providers_models  # noqa: F401
from payments.webhooks import models as webhooks_models  # noqa: F401

run_env(metadata, SCHEMA)
