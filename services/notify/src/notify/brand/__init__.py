from notify.brand import models  # noqa: F401
