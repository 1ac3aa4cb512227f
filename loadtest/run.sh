#!/usr/bin/env bash
# Run one Locust scenario headless against a URL and keep its reports.
#
#   loadtest/run.sh SCENARIO URL [extra locust options...]
#   loadtest/run.sh rush http://127.0.0.1:8000
#
# SCENARIO is seed, rush or browse. Reports go to loadtest/reports/<scenario>-<timestamp>/:
# locust_stats.csv, locust_failures.csv, locust_exceptions.csv, locust_stats_history.csv,
# report.html, console.txt (the console output and log) and, for rush, rush-verdict.json.
# The exit code is Locust's: 0 when every answer was expected (and rush's final check passed).
#
# Environment (all optional):
#   LOADTEST_USERS, LOADTEST_SPAWN_RATE, LOADTEST_RUN_TIME   override the scenario's defaults
#   LOADTEST_RUSH_STUDENTS (N, default 400), LOADTEST_RUSH_CAPACITY (K, default 50)
#   LOADTEST_AUTH=jwt|none (default jwt); with jwt, COURSE_SIGNUP_DATA_DIR or COURSE_SIGNUP_JWT_SECRET
#     must match the server's so that the minted tokens verify
#   LOCUST   the locust executable (default: the project's .venv/bin/locust, else locust on PATH)
set -euo pipefail

usage() {
    echo "usage: $0 seed|rush|browse URL [extra locust options...]" >&2
    exit 2
}
[[ $# -ge 2 ]] || usage
scenario=$1 url=${2%/}
shift 2
[[ $url == http://* || $url == https://* ]] || { echo "$0: URL must start with http:// or https://" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
locust=${LOCUST:-}
if [[ -z $locust ]]; then
    if [[ -x $here/../.venv/bin/locust ]]; then locust=$here/../.venv/bin/locust; else locust=locust; fi
fi

case $scenario in
    seed)   class=SeedUser;   users=10;                                  rate=10;  run_time=60s ;;
    rush)   class=RushUser;   users=${LOADTEST_RUSH_STUDENTS:-400};      rate=100; run_time=120s ;;
    browse) class=BrowseUser; users=50;                                  rate=10;  run_time=60s ;;
    *) usage ;;
esac
users=${LOADTEST_USERS:-$users}
rate=${LOADTEST_SPAWN_RATE:-$rate}
run_time=${LOADTEST_RUN_TIME:-$run_time}
if [[ $scenario == rush && -n ${LOADTEST_USERS:-} ]]; then
    echo "$0: for rush, set LOADTEST_RUSH_STUDENTS (every user is one student)" >&2
    exit 2
fi

reports=$here/reports/$scenario-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$reports"
export LOADTEST_REPORT_DIR=$reports

echo "loadtest: $scenario against $url: $users users, spawn rate $rate/s, at most $run_time; reports in $reports"
set +e
"$locust" -f "$here/locustfile.py" --headless --host "$url" \
    --users "$users" --spawn-rate "$rate" --run-time "$run_time" --stop-timeout 5 \
    --csv "$reports/locust" --csv-full-history --html "$reports/report.html" \
    "$@" "$class" 2>&1 | tee "$reports/console.txt"
code=${PIPESTATUS[0]}
set -e
echo "loadtest: $scenario finished with exit code $code; reports in $reports"
exit "$code"
