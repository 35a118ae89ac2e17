"""What the tests share: the servers they run against (scripted_server, the private Dovecot and
the other real servers, quirky_server), their fixtures (fixtures_dovecot, fixtures_servers), and
small helpers (cli: running popctl in-process; ci: skipping, except under CI; secrets;
layers: reading popctl's imports)."""
