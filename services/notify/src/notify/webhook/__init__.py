from notify.webhook import models  # noqa: F401
