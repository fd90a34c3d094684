#!/usr/bin/env bash
# Starts the services the tests talk to (MariaDB, Redis) on loopback when they are not running.
set -euo pipefail

wait_port() {  # host port name
  for _ in $(seq 1 60); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "$3 did not come up on $1:$2" >&2
  return 1
}

up() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

start_mariadb() {
  if up 127.0.0.1 3306; then echo "mariadb: running"; return; fi
  echo "mariadb: starting"
  if [[ ! -d /var/lib/mysql/mysql ]]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- \
    --user=mysql --bind-address=127.0.0.1 --port=3306
  wait_port 127.0.0.1 3306 mariadb
  # Tests connect as root over TCP without a password, as on the development machines.
  mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket" 2>/dev/null || true
}

start_redis() {
  if up 127.0.0.1 6379; then echo "redis: running"; return; fi
  echo "redis: starting"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 127.0.0.1 6379 redis
}

case "${1:-start}" in
  start) start_mariadb; start_redis ;;
  *) echo "usage: $0 start" >&2; exit 2 ;;
esac
