"""Where the rows come from: data sources (local files or Hub datasets), row filters and eval sets."""
