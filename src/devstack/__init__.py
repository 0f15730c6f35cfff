"""The development stack: embedded servers, the supervisor of `ledger up` and the Horizon
simulator. Production never imports it (the import-linter contract in setup.cfg says
so); a production image can leave it out."""
