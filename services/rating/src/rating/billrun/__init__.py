from rating.billrun import models  # noqa: F401
