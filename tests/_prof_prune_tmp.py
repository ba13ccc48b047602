import cProfile, pstats, time
from tests import test_prune_property as t
from chalicelib.retention import RetentionPolicy
import boto3, time_machine
from moto import mock_aws
from chalicelib.aws import Clients
from chalicelib.deploy.provision import provision
P = t.PruneStep(RetentionPolicy(keep_last=2, keep_daily=2), 6, True)
history = []
for i in range(12):
    history.append(t.Day(changes=[("put","files",t.FILE_KEYS[i%7], b"x%d"%i), ("put","rows","r%d"%(i%4+1), b"y%d"%i)] + ([("delete","files",t.FILE_KEYS[(i+3)%7])] if i%3==0 else []),
        backups=[("once",0)] if i%4 else [("at once",0),("overlap",50)], prune=P if i%2 else None, hours=24))
def go():
    with mock_aws(), time_machine.travel(t.DAY0, tick=True) as clock:
        s3 = boto3.client("s3", region_name="us-east-1"); ddb = boto3.client("dynamodb", region_name="us-east-1")
        s3.create_bucket(Bucket=t.SOURCE_BUCKET); s3.create_bucket(Bucket=t.RESTORE_BUCKET)
        ddb.create_table(TableName=t.TABLE, KeySchema=[{"AttributeName":"pk","KeyType":"HASH"}], AttributeDefinitions=[{"AttributeName":"pk","AttributeType":"S"}], BillingMode="PAY_PER_REQUEST")
        c = Clients(); c.s3; c.dynamodb; c.sns
        w = t.World(s3, ddb, c, clock); [provision(s3, p) for p in w.config.plans.plans]
        t0=time.perf_counter()
        t.live_through(w, history, P)
        print("total", time.perf_counter()-t0, "prunes", w.prunes, "restores", w.restores, "snapshots", len(w.expected))
def test_prof(aws_credentials):
    t0=time.perf_counter(); go(); print("unprofiled", time.perf_counter()-t0); return
    cProfile.runctx("go()", globals(), locals(), "/tmp/prune.prof")
    st = pstats.Stats("/tmp/prune.prof"); st.sort_stats("cumulative").print_stats(60)
    st.sort_stats("tottime").print_stats(25)
