from billing_runtime.migrations import run_env
from dunning.account import models as account_models  # noqa: F401
from dunning.case import models  # noqa: F401
from dunning.db import SCHEMA, metadata
from dunning.policy import models as policy_models  # noqa: F401
from dunning.step import models as step_models  # noqa: F401

run_env(metadata, SCHEMA)
