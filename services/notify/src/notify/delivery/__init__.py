from notify.delivery import models  # noqa: F401
