#!/usr/bin/env python3
"""Self-check of bench/benchlib.py (stdlib unittest, no servers needed):
the percentile rule, and every parser on sample lines written in the formats
the harnesses configure (NGINX error_log at warn, Levee's text log,
HAProxy's "show stat" CSV from the stats socket, wrk --latency with
bench/wrk_hist.lua, h2load with --log-file, Prometheus text).

  python3 -m unittest discover -s bench -p 'test_*.py'
  python3 bench/test_benchlib.py
"""

import math
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


class Percentile(unittest.TestCase):
    def test_nearest_rank(self):
        v = list(range(1, 101))  # 1..100
        self.assertEqual(benchlib.percentile(v, 50), 50)
        self.assertEqual(benchlib.percentile(v, 99), 99)
        self.assertEqual(benchlib.percentile(v, 99.9), 100)
        self.assertEqual(benchlib.percentile(v, 100), 100)
        self.assertEqual(benchlib.percentile(v, 0), 1)
        # ceil(0.99 * 10) = 10th of 10; ceil(0.5 * 10) = 5th
        self.assertEqual(benchlib.percentile([10, 9, 8, 7, 6, 5, 4, 3, 2, 1], 99), 10)
        self.assertEqual(benchlib.percentile(range(1, 11), 50), 5)
        # a sample, never an interpolation
        self.assertEqual(benchlib.percentile([1.0, 2.0], 50), 1.0)
        self.assertEqual(benchlib.percentile([1.0, 2.0], 51), 2.0)

    def test_unsorted_input_is_not_modified(self):
        v = [3, 1, 2]
        self.assertEqual(benchlib.percentile(v, 50), 2)
        self.assertEqual(v, [3, 1, 2])

    def test_one_sample(self):
        for p in (0, 1, 50, 99, 99.9, 100):
            self.assertEqual(benchlib.percentile([0.25], p), 0.25)

    def test_empty(self):
        self.assertTrue(math.isnan(benchlib.percentile([], 99)))
        self.assertTrue(math.isnan(benchlib.percentile_hist([], 99)))
        self.assertTrue(math.isnan(benchlib.percentile_hist([(5, 0)], 99)))

    def test_ties(self):
        v = [1, 2, 2, 2, 2, 2, 2, 2, 2, 9]
        self.assertEqual(benchlib.percentile(v, 50), 2)
        self.assertEqual(benchlib.percentile(v, 90), 2)
        self.assertEqual(benchlib.percentile(v, 91), 9)
        self.assertEqual(benchlib.percentile([7] * 5, 99), 7)

    def test_hist_is_the_same_rule(self):
        pairs = [(3, 2), (1, 1), (2, 4), (10, 1)]
        expanded = [v for v, c in pairs for _ in range(c)]
        for p in (0, 1, 10, 12.5, 13, 50, 87.5, 88, 99, 100):
            self.assertEqual(benchlib.percentile_hist(pairs, p), benchlib.percentile(expanded, p), p)


class Tools(unittest.TestCase):
    WRK = """Running 3s test @ http://127.0.0.1:28000/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms  300.00us  12.50ms   90.00%
    Req/Sec    52.10k     1.20k   54.00k    80.00%
  Latency Distribution
     50%    1.15ms
     75%    1.30ms
     90%    1.45ms
     99%    2.10ms
  156300 requests in 3.00s, 20.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  52100.33
Transfer/sec:      6.71MB
"""

    def test_wrk(self):
        w = benchlib.parse_wrk(self.WRK)
        self.assertAlmostEqual(w["rps"], 52100.33)
        self.assertEqual(w["errors"], 7)
        self.assertAlmostEqual(w["wrk_pct"][99], 0.0021)
        self.assertAlmostEqual(w["wrk_pct"][50], 0.00115)
        self.assertAlmostEqual(benchlib.duration_s("850.00us"), 0.00085)
        self.assertAlmostEqual(benchlib.duration_s("2.00s"), 2.0)
        self.assertTrue(math.isnan(benchlib.duration_s("?")))

    def test_wrk_hist(self):
        pairs, complete = benchlib.parse_wrk_hist("1100 3\n1150 5\n2100 1\n20000 1\ncomplete\n")
        self.assertTrue(complete)
        self.assertEqual(len(pairs), 4)
        self.assertAlmostEqual(benchlib.percentile_hist(pairs, 50), 0.00115)
        self.assertAlmostEqual(benchlib.percentile_hist(pairs, 90), 0.0021)
        self.assertAlmostEqual(benchlib.percentile_hist(pairs, 99), 0.02)
        _, complete = benchlib.parse_wrk_hist("1100 3\nincomplete\n")
        self.assertFalse(complete)

    def test_h2load(self):
        text = """finished in 3.00s, 41234.50 req/s, 1.50MB/s
requests: 123703 total, 123703 started, 123703 done, 123700 succeeded, 3 failed, 2 errored, 1 timeout
status codes: 123700 2xx, 0 3xx, 0 4xx, 3 5xx
"""
        h = benchlib.parse_h2load(text)
        self.assertAlmostEqual(h["rps"], 41234.5)
        self.assertEqual(h["errors"], 9)
        lat = benchlib.parse_h2load_log(["1733280000123456\t200\t1520\n", "1733280000123999\t200\t980\n", "junk\n"])
        self.assertEqual(len(lat), 2)
        self.assertAlmostEqual(lat[0], 0.00152)
        self.assertAlmostEqual(benchlib.percentile(lat, 99), 0.00152)


class Logs(unittest.TestCase):
    NGINX = [
        '2026/12/04 00:04:46 [error] 3792#3792: *22 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 127.0.0.1, server: , request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:29101/", host: "127.0.0.1:29000"\n',
        '2026/12/04 00:04:47 [warn] 3792#3792: *29 upstream server temporarily disabled while reading response header from upstream, client: 127.0.0.1, server: , request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:29101/", host: "127.0.0.1:29000"\n',
        '2026/12/04 00:04:48 [error] 3792#3792: *31 no live upstreams while connecting to upstream, client: 127.0.0.1, server: , request: "GET /work HTTP/1.1", upstream: "http://app/work", host: "127.0.0.1:30000"\n',
        '2026/12/04 00:04:49 [warn] 3792#3792: *40 limiting requests, excess: 10.500 by zone "per_tenant", client: 127.0.0.1, server: , request: "GET /work HTTP/1.1", host: "127.0.0.1:30000"\n',
        '2026/12/04 00:04:49 [warn] 3792#3792: *41 limiting connections by zone "conn_per_tenant", client: 127.0.0.1, server: , request: "GET /work HTTP/1.1", host: "127.0.0.1:30000"\n',
        "2026/12/04 00:04:50 [notice] 3791#3791: signal process started\n",
    ]

    def test_nginx_line(self):
        e = benchlib.parse_nginx_error_line(self.NGINX[1])
        self.assertEqual(e["level"], "warn")
        self.assertEqual(e["pid"], 3792)
        self.assertEqual(e["conn"], 29)
        self.assertTrue(e["message"].startswith("upstream server temporarily disabled"))
        e = benchlib.parse_nginx_error_line(self.NGINX[5])
        self.assertEqual((e["level"], e["conn"], e["message"]), ("notice", None, "signal process started"))
        self.assertIsNone(benchlib.parse_nginx_error_line("not a log line\n"))

    def test_nginx_counts(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "nginx.error.log")
            with open(path, "w") as f:
                f.writelines(self.NGINX + self.NGINX[2:3])
            c = benchlib.nginx_error_counts(
                path,
                [
                    ("no live upstreams", "nlu"),
                    ("temporarily disabled", "td"),
                    ("limiting requests", "lr"),
                    ("limiting connections", "lc"),
                ],
            )
            self.assertEqual(c, {"nlu": 2, "td": 1, "lr": 1, "lc": 1})
            self.assertEqual(benchlib.nginx_error_counts(os.path.join(d, "missing"), [("x", "x")]), {})

    def test_levee(self):
        warn = "2026-12-04T00:04:09.790270Z  WARN levee_proxy::cluster: outlier ejected cluster=app endpoint=127.0.0.1:29101\n"
        e = benchlib.parse_levee_log_line(warn)
        self.assertEqual((e["level"], e["target"]), ("WARN", "levee_proxy::cluster"))
        self.assertTrue(e["message"].startswith("outlier ejected"))
        err = "2026-12-04T00:04:10.000001Z ERROR levee_proxy::gateway: upstream request failed error=connection reset\n"
        self.assertTrue(benchlib.levee_log_is_problem(err))
        self.assertFalse(benchlib.levee_log_is_problem(warn))
        self.assertTrue(benchlib.levee_log_is_problem("thread 'tokio-runtime-worker' panicked at crates/x.rs:1:2:\n"))
        self.assertIsNone(benchlib.parse_levee_log_line("note: run with `RUST_BACKTRACE=1`\n"))


class HAProxyStat(unittest.TestCase):
    CSV = (
        "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown\n"
        "fe,FRONTEND,,,0,51,8192,58,1091244,1629416,0,0,1,,,,,OPEN,,,,,\n"
        "app,s1,0,0,0,49,,2756,150564,224536,,0,,0,0,1105,1105,UP,1,1,0,3,1\n"
        "app,s2,0,0,0,12,,2001,1,2,,0,,0,0,0,0,DOWN,1,1,0,0,0\n"
        "app,BACKEND,0,7,0,51,820,4757,1,2,0,0,,0,0,1105,1105,UP,2,2,0,,1\n"
        "\n"
    )

    def test_parse(self):
        rows = benchlib.parse_haproxy_stat(self.CSV)
        self.assertEqual(len(rows), 4)
        s1 = rows[1]
        self.assertEqual((s1["pxname"], s1["svname"], s1["status"]), ("app", "s1", "UP"))
        self.assertEqual((s1["wretr"], s1["wredis"], s1["chkdown"]), ("1105", "1105", "1"))
        self.assertEqual(rows[3]["qmax"], "7")
        self.assertEqual(benchlib.parse_haproxy_stat(""), [])
        self.assertEqual(benchlib.parse_haproxy_stat("Unknown command\n"), [])

    def test_file(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "haproxy.stat.csv")
            self.assertIsNone(benchlib.read_haproxy_stat_file(path))
            with open(path, "w") as f:
                f.write(self.CSV)
            self.assertEqual(len(benchlib.read_haproxy_stat_file(path)), 4)


class Metrics(unittest.TestCase):
    def test_prometheus(self):
        m = benchlib.parse_metrics(
            [
                "# HELP levee_retries_total Retries.",
                "# TYPE levee_retries_total counter",
                'levee_retries_total{cluster="app",reason="connect"} 3',
                'levee_retries_total{cluster="app",reason="timeout"} 4',
                'levee_ratelimit_decisions_total{route="app",result="allowed"} 1010',
                'levee_ratelimit_decisions_total{route="app",result="limited"} 990',
                "levee_redis_connected 1",
                "garbage line",
            ]
        )
        self.assertEqual(len(m), 5)
        self.assertEqual(benchlib.msum(m, "levee_retries_total"), 7)
        self.assertEqual(benchlib.msum(m, "levee_ratelimit_decisions_total", result="limited"), 990)
        self.assertEqual(benchlib.msum(m, "levee_redis_connected"), 1)
        self.assertEqual(benchlib.msum(m, "absent"), 0)


class Upstream(unittest.TestCase):
    def test_take_requests(self):
        class T:
            aborted = False

            def abort(self):
                self.aborted = True

        buf = bytearray(
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-Bench-Id: 7\r\n\r\n"
            b"POST /b HTTP/1.1\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc"
            b"GET /c HTTP/1.0\r\n\r\n"
            b"GET /d HTTP/1.1\r\n"
        )
        t = T()
        got = list(benchlib.take_requests(buf, t))
        self.assertEqual([(p, c) for p, _, c in got], [(b"/a", False), (b"/b", True), (b"/c", True)])
        self.assertEqual(got[0][1][b"x-bench-id"], b"7")
        self.assertEqual(bytes(buf), b"GET /d HTTP/1.1\r\n")
        self.assertFalse(t.aborted)
        big = bytearray(b"GET / HTTP/1.1\r\n" + b"x" * (benchlib.MAX_HEAD + 1))
        self.assertEqual(list(benchlib.take_requests(big, t)), [])
        self.assertTrue(t.aborted)

    def test_schedule(self):
        s = benchlib.schedule(100, 2, "poisson", 1)
        self.assertEqual(s, benchlib.schedule(100, 2, "poisson", 1))
        self.assertTrue(all(0 <= a < b < 2 for a, b in zip(s, s[1:])))
        self.assertEqual(benchlib.schedule(4, 1, "uniform", 1), [0.0, 0.25, 0.5, 0.75])


if __name__ == "__main__":
    unittest.main()
