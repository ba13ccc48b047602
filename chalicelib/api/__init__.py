"""What the REST API does between parsing a request and answering it."""
