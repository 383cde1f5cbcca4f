"""The scan service: a REST API over scans and the catalog, its scheduler and its status page."""
