"""Running the ledger: settings, logging, embedded servers, migrations, supervision, CLI."""
