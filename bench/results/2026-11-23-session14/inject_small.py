# inject_small.py BOOTSTRAP RATE SECONDS PRODUCERS: like inject_claims.py, but as the 1M run's
# other processes write them: PRODUCERS producers, each record in a batch of its own.
import json, sys, time
from multiprocessing import Process
from confluent_kafka import Producer

def run(bootstrap, rate, seconds, idx, k):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "batch.num.messages": 1,
                  "acks": "all", "max.in.flight": 1000})
    start = time.time(); n = 0
    while True:
        t = time.time() - start
        if t >= seconds: break
        due = int(t * rate)
        while n < due:
            m = n * k + idx
            v = json.dumps({"gen": 1, "owner": "4242%02d-1700000000000/0/%d" % (idx, m), "subs": [],
                            "cursor": {}, "expiry_s": 0, "connected": True,
                            "at_ms": int(time.time() * 1000)})
            p.produce("mqtt-sessions", key="inject-%09d" % m, value=v)
            n += 1
            p.poll(0)
        time.sleep(0.005)
    left = p.flush(60)
    print("producer", idx, "injected", n, "unflushed", left, flush=True)

if __name__ == "__main__":
    bootstrap, rate, seconds, k = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    ps = [Process(target=run, args=(bootstrap, rate / k, seconds, i, k)) for i in range(k)]
    [p.start() for p in ps]; [p.join() for p in ps]
