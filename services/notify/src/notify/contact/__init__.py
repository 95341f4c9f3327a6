from notify.contact import models  # noqa: F401
