"""Source connectors: files, SQL and HTTP APIs behind one interface (``base.Connector``)."""
