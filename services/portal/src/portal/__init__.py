"""The white-label billing portal (server-rendered; talks to the services only over their APIs)."""
