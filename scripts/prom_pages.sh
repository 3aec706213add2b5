# Sourced by scripts/demo.sh. `prom_page BASE PATH...` prints BASE+PATH for the first PATH that
# the running Prometheus serves with 200: Prometheus 2.x with its React UI serves /alerts and
# /graph; Debian's build (2.42 in bookworm) ships without the React UI assets, so those are 404
# there and only the classic pages (/classic/alerts, /classic/graph) work. Prometheus 3 has no
# /classic pages. Nothing answers: the last PATH, so that the line still says what was meant.
prom_page() {
  local base=$1 path
  shift
  for path in "$@"; do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$base$path")" = 200 ]; then
      echo "$base$path"
      return 0
    fi
  done
  echo "$base$path"
}
