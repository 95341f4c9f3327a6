from rating.catalogue import models  # noqa: F401
