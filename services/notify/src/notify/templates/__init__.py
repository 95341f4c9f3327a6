"""Mail templates (Jinja2 files beside this module) and their renderer."""
