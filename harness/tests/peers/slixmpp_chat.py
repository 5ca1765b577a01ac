"""A third-party XMPP client for sixpac's end-to-end tests: slixmpp (Debian's python3-slixmpp)
logs in over STARTTLS, trusting only the CA file given, sends one chat message and leaves.

usage: slixmpp_chat.py HOST PORT JID PASSWORD CA_FILE TO TEXT
Exit 0 once the message is sent and the stream closed, 1 on failure or after 20 s.
"""
import asyncio
import sys

import slixmpp


class Chat(slixmpp.ClientXMPP):
    def __init__(self, jid, password, to, text):
        super().__init__(jid, password)
        self.to, self.text, self.ok = to, text, False
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", lambda _: self.disconnect())

    async def start(self, _event):
        self.send_presence()
        self.send_message(mto=self.to, mbody=self.text, mtype="chat")
        self.ok = True
        self.disconnect()


def main():
    host, port, jid, password, ca, to, text = sys.argv[1:8]
    xmpp = Chat(jid, password, to, text)
    xmpp.ca_certs = ca
    xmpp.connect(address=(host, int(port)), force_starttls=True)
    loop = asyncio.get_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(xmpp.disconnected, 20))
    except asyncio.TimeoutError:
        print("slixmpp_chat: no disconnect within 20 s", file=sys.stderr)
        return 1
    return 0 if xmpp.ok else 1


if __name__ == "__main__":
    sys.exit(main())
