//! Presence subscriptions as the reference client handles them (RFC 6121 §3): ask for a
//! contact's presence, approve or refuse a contact's request, approve before being asked
//! (pre-approval, §3.4), and cancel a subscription. Each waits for what the server owes the
//! user in return (the roster push, §3.1.2 and §3.1.5, to a resource that asked for the roster), so
//! traces keep one order.

use super::{Actor, StepError};
use crate::scenario::Wire;
use tokio::time::Instant;

/// The roster push for one contact (any attributes: ask, subscription, ver).
fn roster_push(jid: &str) -> String {
    format!("<iq type='set'><query xmlns='jabber:iq:roster'><item jid='{jid}'/></query></iq>")
}

impl Actor {
    /// Ask for the roster at login (RFC 6121 §2.1.3; RFC 7081 §3 for a dual client): this
    /// makes the resource "interested", so the server sends it roster pushes and
    /// subscription presences (§2.1.6, §3.1.3).
    pub(crate) async fn fetch_roster(&mut self, deadline: Instant) -> Result<(), StepError> {
        let roster = self.iq("type='get'", "<query xmlns='jabber:iq:roster'/>", deadline).await?;
        if roster.attr("type") != Some("result") {
            return Err(StepError::Fail(format!("roster get failed: {}", roster.to_xml())));
        }
        self.roster_requested = true;
        Ok(())
    }

    /// Wait for the roster push about `jid`, if the server owes us one: pushes go only to
    /// resources that asked for the roster (RFC 6121 §2.1.6).
    async fn roster_pushed(&mut self, jid: &str, deadline: Instant) -> Result<(), StepError> {
        if self.roster_requested {
            self.receive(Wire::Xmpp, &roster_push(jid), deadline).await?;
        }
        Ok(())
    }

    /// §3.1.1: `subscribe` to a contact; the server pushes the item with ask='subscribe'.
    pub async fn add_contact(&mut self, jid: &str, deadline: Instant) -> Result<(), StepError> {
        self.send_xmpp(format!("<presence to='{jid}' type='subscribe'/>"))?;
        self.roster_pushed(jid, deadline).await
    }

    /// §3.1.4-5: wait for the contact's request, answer `subscribed`; the server pushes the
    /// item with the new subscription state.
    pub async fn approve_contact(&mut self, jid: &str, deadline: Instant) -> Result<(), StepError> {
        self.receive(Wire::Xmpp, &format!("<presence from='{jid}' type='subscribe'/>"), deadline).await?;
        self.send_xmpp(format!("<presence to='{jid}' type='subscribed'/>"))?;
        self.roster_pushed(jid, deadline).await
    }

    /// §3.2: wait for the contact's request and refuse it with `unsubscribed`.
    pub async fn deny_contact(&mut self, jid: &str, deadline: Instant) -> Result<(), StepError> {
        self.receive(Wire::Xmpp, &format!("<presence from='{jid}' type='subscribe'/>"), deadline).await?;
        self.send_xmpp(format!("<presence to='{jid}' type='unsubscribed'/>"))
    }

    /// §3.4: `subscribed` before any request. Servers need not push anything for it, so a
    /// ping (answered in stream order) is the barrier after which the approval is stored. Both
    /// go in one write, so whatever the server says about the approval follows them both.
    pub async fn pre_approve_contact(&mut self, jid: &str, deadline: Instant) -> Result<(), StepError> {
        let approval = format!("<presence to='{jid}' type='subscribed'/>");
        let pong = self.iq_after(&approval, "type='get'", "<ping xmlns='urn:xmpp:ping'/>", deadline).await?;
        match pong.attr("type") {
            Some("result") => Ok(()),
            _ => Err(StepError::Fail(format!("ping after the pre-approval failed: {}", pong.to_xml()))),
        }
    }

    /// §3.3: `unsubscribe` from a contact's presence; the server pushes the changed item.
    pub async fn cancel_subscription(&mut self, jid: &str, deadline: Instant) -> Result<(), StepError> {
        self.send_xmpp(format!("<presence to='{jid}' type='unsubscribe'/>"))?;
        self.roster_pushed(jid, deadline).await
    }
}
