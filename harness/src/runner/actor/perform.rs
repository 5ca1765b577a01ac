//! The reference client carrying out an intent: here it decides how ("call bob" becomes a
//! vCard-driven INVITE for a dual contact, "chat" goes over XMPP unless the peer has only SIP).

use super::{Actor, Endpoints, StepError};
use crate::runner::intent::{Intent, Peer};
use crate::runner::{CLOSE_DEADLINE, CONNECT_DEADLINE, STEP_DEADLINE};
use crate::scenario::ActorKind;
use tokio::time::Instant;


impl Actor {
    /// Do what the intent asks, as RFC 7081 asks of a dual-stack client.
    pub async fn perform(&mut self, intent: &Intent, ep: &Endpoints) -> Result<(), StepError> {
        let deadline = Instant::now() + STEP_DEADLINE;
        match intent {
            Intent::Connect => self.connect(ep, Instant::now() + CONNECT_DEADLINE).await,
            Intent::Disconnect => self.disconnect(Instant::now() + CLOSE_DEADLINE).await,
            Intent::Register => self.register(ep, Instant::now() + CONNECT_DEADLINE).await,
            Intent::Unregister => self.unregister(deadline).await,
            Intent::Message { to, text } => self.message(to.sip.clone(), text.clone(), deadline).await,
            // A SIP-only peer gets its messages over SIP (RFC 7081 §3.4).
            Intent::Chat { to, text } if to.kind == ActorKind::Sip => self.message(to.sip.clone(), text.clone(), deadline).await,
            Intent::Chat { to, text } => self.chat(to.jid.clone(), to.sip.clone(), text.clone(), deadline).await,
            Intent::SetPresence { show, status } => self.set_presence(show, status).await,
            Intent::Call { to, video } => self.call_peer(to, *video, deadline).await,
            Intent::CallClaiming { to, claimed } => self.call_claiming(&to.jid, &claimed.jid, deadline).await,
            Intent::Escalate => self.escalate(deadline).await,
            Intent::Answer => self.answer(deadline).await,
            Intent::Reject { code } => self.reject(*code, deadline).await,
            Intent::Cancel => self.cancel(deadline).await,
            Intent::HangUp => self.hang_up(deadline).await,
            Intent::PublishPresence { open, note } => self.publish_presence(*open, note.clone(), deadline).await,
            Intent::RefreshPresence => self.refresh_presence(false, deadline).await,
            Intent::WithdrawPresence => self.refresh_presence(true, deadline).await,
            Intent::Subscribe { to } => self.subscribe(to.sip.clone(), 3600, deadline).await,
            Intent::Unsubscribe { to } => self.subscribe(to.sip.clone(), 0, deadline).await,
            Intent::AddContact { to } => self.add_contact(&to.jid, deadline).await,
            Intent::ApproveContact { to } => self.approve_contact(&to.jid, deadline).await,
            Intent::DenyContact { to } => self.deny_contact(&to.jid, deadline).await,
            Intent::PreApproveContact { to } => self.pre_approve_contact(&to.jid, deadline).await,
            Intent::CancelSubscription { to } => self.cancel_subscription(&to.jid, deadline).await,
            Intent::VerifyCaps { of } => self.verify_caps(&of.jid, deadline).await,
            Intent::ExpectCaller { caller } => self.expect_caller(caller.as_ref().map(|p| p.jid.as_str())),
            Intent::ExpectCallCaution { warned } => self.expect_call_caution(*warned),
            Intent::ExpectProtectionWarning { warned } => self.expect_protection_warning(*warned),
            Intent::SendRaw { wire, text } => self.send(*wire, text.clone()).await,
        }
    }

    /// Dual to dual is a CUSAX call: the SIP URI comes from the callee's vCard. An XMPP-only
    /// callee would need Jingle (RFC 7081 §3.4), which the reference client lacks.
    async fn call_peer(&mut self, to: &Peer, video: bool, deadline: Instant) -> Result<(), StepError> {
        match (self.kind, to.kind) {
            (_, ActorKind::Xmpp) => Err(StepError::Inconclusive(format!(
                "{} is XMPP-only: RFC 7081 §3.4 (CUSAX-8) asks for a Jingle call, and the reference client offers no Jingle",
                to.name
            ))),
            (ActorKind::Dual, ActorKind::Dual) => self.call_contact(&to.jid, deadline).await,
            _ => self.call(to.sip.clone(), video).await,
        }
    }
}
