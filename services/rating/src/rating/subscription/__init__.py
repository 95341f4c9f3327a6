from rating.subscription import models  # noqa: F401
