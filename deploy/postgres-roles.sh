#!/bin/sh
# The role Confide's server runs as (docs/operations.md, "Two database roles").
#
# The postgres image runs this once, on an empty data directory, as
# POSTGRES_USER (`confide`, which owns the database and runs the migrations).
# `confide_app` gets no rights here: `confide migrate`, run as the owner with
# CONFIDE_DATABASE_URL naming `confide_app`, grants it SELECT, INSERT, UPDATE
# and DELETE on every table and its sequences, and on the audit log only
# SELECT and INSERT. The password is read by psql from the secret file, so it
# never appears on a command line.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
\set app_password `cat /run/secrets/app_db_password`
CREATE ROLE confide_app LOGIN PASSWORD :'app_password';
SQL
