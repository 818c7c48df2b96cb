"""A handler for Debian's aiosmtpd that keeps every message it accepts, for the delivery
tests and benches/delivery.sh:

    PYTHONPATH=tests /usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c smtp_sink.Save DIR

Each message becomes DIR/<pid>-<n>.eml (the bytes as received) and DIR/<pid>-<n>.json
(envelope sender and recipients, and when it was accepted, unix seconds), each written
under another name first and renamed, so that a reader never sees half a message.
"""

import itertools
import json
import os
import time


class Save:
    def __init__(self, directory):
        self.directory = directory
        self.count = itertools.count(1)
        os.makedirs(directory, exist_ok=True)

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("smtp_sink.Save takes one argument: the directory")
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        accepted = time.time()
        base = os.path.join(self.directory, "%d-%06d" % (os.getpid(), next(self.count)))
        with open(base + ".eml.part", "wb") as f:
            f.write(envelope.original_content)
        with open(base + ".json.part", "w") as f:
            json.dump(
                {"from": envelope.mail_from, "to": envelope.rcpt_tos, "accepted": accepted}, f
            )
        os.rename(base + ".json.part", base + ".json")
        os.rename(base + ".eml.part", base + ".eml")
        return "250 Message accepted for delivery"


def show(path):
    """A saved message as JSON: its headers, its subject decoded, its parts (type, file
    name, decoded text or size and first bytes of binary ones)."""
    import email
    from email import policy

    with open(path, "rb") as f:
        message = email.message_from_binary_file(f, policy=policy.default)
    parts = []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        entry = {
            "type": part.get_content_type(),
            "filename": part.get_filename(),
            "size": len(payload),
        }
        if part.get_content_maintype() == "text":
            entry["text"] = part.get_content()
        else:
            entry["head"] = payload[:4].decode("latin-1")
        parts.append(entry)
    return {
        "headers": [[k, str(v)] for k, v in message.items()],
        "raw_header_names": [k for k, _ in message.raw_items()],
        "subject": str(message["subject"]),
        "parts": parts,
    }


if __name__ == "__main__":
    import sys

    print(json.dumps(show(sys.argv[1])))
