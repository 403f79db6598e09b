#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 and that the tracker's role and
# databases exist. Installs and starts the Debian server on a fresh machine; on a machine where
# one is already running it only creates what is missing. Safe to run repeatedly.
set -euo pipefail
PGHOST=127.0.0.1
PGPORT=${PGPORT:-5432}
ROLE=tracker
PASSWORD=tracker
DATABASES=("tracker_test" "tracker_bench")

as_postgres() {
  # Run one SQL statement as the postgres superuser: over TCP where trust auth allows it,
  # else through the local socket as the postgres OS user (a fresh Debian install).
  local sql=$1
  psql -v ON_ERROR_STOP=1 -qAt -h "$PGHOST" -p "$PGPORT" -U postgres -d postgres -c "$sql" 2>/dev/null ||
    runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qAt -p "$PGPORT" -d postgres -c "$sql"
}

if ! pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; then
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    echo "PostgreSQL not found: installing Debian's postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  echo "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do
    pg_isready -q -h "$PGHOST" -p "$PGPORT" && break
    sleep 1
  done
fi
pg_isready -h "$PGHOST" -p "$PGPORT"

as_postgres "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
  CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'; END IF; END \$\$"
for db in "${DATABASES[@]}"; do
  if [ -z "$(as_postgres "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    as_postgres "CREATE DATABASE $db OWNER $ROLE"
  fi
done
echo "PostgreSQL ready: postgresql+psycopg://$ROLE:$PASSWORD@$PGHOST:$PGPORT/${DATABASES[0]}"
