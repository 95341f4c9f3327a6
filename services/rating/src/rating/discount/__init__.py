from rating.discount import models  # noqa: F401
