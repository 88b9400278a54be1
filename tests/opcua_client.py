"""An OPC UA client of linesight's server, with asyncua (tests/opcua.rs).

    python opcua_client.py URL DEVICE [USER PASSWORD CERT_DIR]

Reads Identification, then subscribes (sampling interval 0, a queue of 1000, data-change
trigger StatusValueTimestamp) to every node of ResultManagement/LastResult and to SystemState, until SystemState says
"stopped". A result is the values that share one source timestamp; it is complete when
its ResultId has come. With USER, PASSWORD and CERT_DIR, connects with Basic256Sha256
sign and encrypt, its own certificate made in CERT_DIR, and that user.

Prints one JSON object per line: {"identification": {...}}, {"subscribed": true}, {"result": {...}} for each
result in the order of its ResultId notification (times as Unix ms), {"end": {...}} with Counters and Health
as last read. A connection the server refuses prints {"refused": "why"} and exits 3.
"""

import asyncio
import datetime
import json
import math
import os
import sys

from asyncua import Client, ua

URL, DEVICE = sys.argv[1], sys.argv[2]
USER = sys.argv[3:6]
HUNG_S = 120
LAST = "ResultManagement/LastResult/"
FIELDS = ["PartId", "CreationTime", "ResultState", "Pass", "Reason", "AnomalyScore",
          "Threshold", "ProcessingTimeMs", "ModelId", "ImageReference", "ResultId"]
IDENT = ["Manufacturer", "Model", "SoftwareRevision", "ModelName", "ModelSha256",
         "ConfigSha256", "Provider", "RunId"]
END = ["Counters/Parts", "Counters/Passed", "Counters/Rejected", "Counters/Errors",
       "Health/Heartbeat", "Health/CameraOk", "Health/RecordErrors", "Health/ResultsDropped"]


def out(**kv):
    print(json.dumps(kv), flush=True)


def plain(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, datetime.datetime):  # as Unix ms, like the results log's unix_ms
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return round(v.timestamp() * 1000)
    return v


class Results:
    """Values by source timestamp; a result goes out when its ResultId comes."""

    def __init__(self):
        self.by_stamp = {}
        self.done = []
        self.stopped = asyncio.Event()
        self.names = {}

    def datachange_notification(self, node, val, data):
        name = self.names[node.nodeid.Identifier]
        if name == "SystemState":
            if val == "stopped":
                self.stopped.set()
            return
        dv = data.monitored_item.Value
        stamp = dv.SourceTimestamp
        fields = self.by_stamp.setdefault(stamp, {})
        fields[name] = plain(val)
        if name == "ResultId" and val != 0:
            self.done.append(stamp)

    def results(self):
        return [self.by_stamp[s] for s in self.done]


def item(node, handle, data_filter):
    """A monitored item of the node's value: sampling interval 0, a queue of 1000."""
    params = ua.MonitoringParameters(ClientHandle=handle, SamplingInterval=0, QueueSize=1000,
                                     DiscardOldest=True, Filter=data_filter)
    return ua.MonitoredItemCreateRequest(
        ItemToMonitor=ua.ReadValueId(NodeId=node.nodeid, AttributeId=ua.AttributeIds.Value),
        MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=params)


async def main():
    client = Client(URL, timeout=10)
    if USER:
        user, password, cert_dir = USER
        from asyncua.crypto.cert_gen import setup_self_signed_certificate
        from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
        from cryptography.x509.oid import ExtendedKeyUsageOID
        from pathlib import Path

        key, cert = Path(cert_dir, "client-key.pem"), Path(cert_dir, "client-cert.der")
        uri = "urn:linesight-test-client"
        await setup_self_signed_certificate(key, cert, uri, "localhost",
                                            [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "linesight test client"})
        client.application_uri = uri
        client.set_user(user)
        client.set_password(password)
        await client.set_security(SecurityPolicyBasic256Sha256, str(cert), str(key),
                                  mode=ua.MessageSecurityMode.SignAndEncrypt)
    try:
        await client.connect()
    except Exception as e:  # the server's refusal, as the client sees it
        out(refused=f"{type(e).__name__}: {e}")
        sys.exit(3)
    try:
        ns = await client.get_namespace_index("urn:linesight")
        base = f"LineSight/{DEVICE}/"

        def node(path):
            return client.get_node(ua.NodeId(base + path, ns))

        ident = {n: await node("Identification/" + n).read_value() for n in IDENT}
        out(identification=ident)
        handler = Results()
        watched = [LAST + f for f in FIELDS] + ["SystemState"]
        for w in watched:
            handler.names[base + w] = w.split("/")[-1]
        sub = await client.create_subscription(50, handler)
        # Every write notifies, also of a value equal to the last one (a second pass in a
        # row): trigger StatusValueTimestamp, sampling interval 0, a queue.
        every_write = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
        results = await sub.create_monitored_items([item(node(w), h, every_write) for h, w in enumerate(watched, 1)])
        bad = [r for r in results if isinstance(r, ua.StatusCode)]
        if bad:
            raise RuntimeError(f"monitored items refused: {bad}")
        out(subscribed=True)
        await asyncio.wait_for(handler.stopped.wait(), HUNG_S)
        # One more publish for anything that came with the stop.
        await asyncio.sleep(0.2)
        for r in handler.results():
            out(result=r)
        out(end={p: plain(await node(p).read_value()) for p in END})
    finally:
        try:
            await client.disconnect()
        except Exception:
            pass  # the server may already have closed the session


asyncio.run(main())
