//! The reference client's CUSAX behaviour (RFC 7081): the identity link through the vCard
//! (§3.1), the SIP URI advertised in presence (XEP-0152), calls to the SIP URI a contact's
//! vCard names (§3.3) with `Call-Info: <xmpp:…>;purpose=impp` (§3.5), and chat over XMPP
//! only (§3). A misbehaviour switch makes the client break one of these on purpose, so the
//! suite can show it catches a non-conforming client.

use super::{fail, Actor, StepError};
use crate::scenario::Wire;
use crate::xml::{escape, Element};
use tokio::time::Instant;

/// Ways the reference client can be told to break CUSAX, to prove the suite notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Send chat as SIP MESSAGE instead of XMPP (breaks CUSAX-3).
    ChatOverSip,
}

impl Misbehaviour {
    /// The command-line name.
    pub fn parse(s: &str) -> Option<Misbehaviour> {
        match s {
            "chat-over-sip" => Some(Misbehaviour::ChatOverSip),
            _ => None,
        }
    }
}

/// The SIP URIs a vCard-temp `<vCard/>` names in TELs, in document order, each with whether
/// its TEL is typed video.
pub fn sip_tels(vcard: &Element) -> Vec<(String, bool)> {
    vcard
        .elements()
        .filter(|e| e.local_name() == "TEL")
        .filter_map(|tel| {
            let number = tel.child("NUMBER").map(|n| n.text().trim().to_string())?;
            number.starts_with("sip:").then(|| (number, tel.child("VIDEO").is_some()))
        })
        .collect()
}

/// Where to call a contact: the first XEP-0152 address, in document order (REACH-3), that
/// the contact's vCard confirms (CUSAX-6: unconfirmed addresses are only hints); else the
/// vCard's first SIP URI.
pub fn call_target(tels: &[(String, bool)], reach: &[String]) -> Option<(String, bool)> {
    reach.iter().find_map(|a| tels.iter().find(|(uri, _)| uri == a)).or(tels.first()).cloned()
}

/// RFC 7081 §5: what the user should hear before a call to `uri` goes out, if anything: a
/// telephone number (which may reach the PSTN and cost money) or an address outside the
/// user's own domain.
pub fn call_caution(uri: &str, own_domain: &str) -> Option<String> {
    let rest = uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("sips:"));
    let Some(rest) = rest else {
        return Some(format!("{uri} is not a SIP address (a telephone number?)"));
    };
    let (addr, params) = rest.split_once(';').unwrap_or((rest, ""));
    let (user, host) = addr.rsplit_once('@').unwrap_or(("", addr));
    let host = host.split(':').next().unwrap_or(host);
    let phone = params.split(';').any(|p| p.eq_ignore_ascii_case("user=phone"))
        || (user.starts_with('+') && user.len() > 1 && user[1..].chars().all(|c| c.is_ascii_digit() || "-.()".contains(c)));
    if phone {
        Some(format!("{uri} is a telephone number: the call may go to the PSTN"))
    } else if !host.eq_ignore_ascii_case(own_domain) {
        Some(format!("{uri} is outside {own_domain}"))
    } else {
        None
    }
}

/// The `<addr uri>` values of a presence's `<reach xmlns='urn:xmpp:reach:0'>`, in order.
pub fn reach_addrs(presence: &Element) -> Vec<String> {
    presence
        .elements()
        .filter(|e| e.local_name() == "reach" && e.ns.as_deref() == Some("urn:xmpp:reach:0"))
        .flat_map(|r| r.elements().filter(|a| a.local_name() == "addr").filter_map(|a| a.attr("uri").map(str::to_string)))
        .collect()
}

impl Actor {
    /// Send an iq request and wait for its result (or error) by id.
    pub(crate) async fn iq(&mut self, attrs: &str, payload: &str, deadline: Instant) -> Result<Element, StepError> {
        self.iq_after("", attrs, payload, deadline).await
    }

    /// The same, with `before` (stanzas) sent in the same write as the request, so no answer
    /// to `before` can be recorded between the two: a barrier whose place in the trace is fixed.
    pub(crate) async fn iq_after(&mut self, before: &str, attrs: &str, payload: &str, deadline: Instant) -> Result<Element, StepError> {
        self.iq_seq += 1;
        let id = format!("sixpac-{}-{}", self.name, self.iq_seq);
        self.send_xmpp(format!("{before}<iq {attrs} id='{id}'>{payload}</iq>"))?;
        loop {
            if let Some(i) = self.xmpp_inbox.iter().position(|e| e.local_name() == "iq" && e.attr("id") == Some(id.as_str())) {
                return Ok(self.xmpp_inbox.remove(i));
            }
            if self.next_xmpp(deadline).await?.is_none() {
                return fail(format!("no answer to iq {id} before the deadline"));
            }
        }
    }

    /// What a dual actor does once logged in over XMPP and holding its roster, before its
    /// initial presence: publish the vCard whose TEL links the SIP account (§3.1).
    pub(crate) async fn link_identity(&mut self, deadline: Instant) -> Result<(), StepError> {
        let aor = format!("sip:{}@{}", self.account.user, self.account.domain);
        let video = if self.video { "<VIDEO/>" } else { "" };
        let vcard = format!(
            "<vCard xmlns='vcard-temp'><FN>{}</FN><TEL><VOICE/>{video}<NUMBER>{}</NUMBER></TEL></vCard>",
            escape(&self.name, false),
            escape(&aor, false)
        );
        let r = self.iq("type='set'", &vcard, deadline).await?;
        if r.attr("type") != Some("result") {
            return fail(format!("vCard publication failed: {}", r.to_xml()));
        }
        Ok(())
    }

    /// Initial presence: a dual actor adds entity caps and its SIP URI as a XEP-0152 address.
    pub(crate) fn initial_presence(&self) -> String {
        let priority = self.behaviour.priority.map(|p| format!("<priority>{p}</priority>")).unwrap_or_default();
        if self.sip.is_none() {
            return if priority.is_empty() { "<presence/>".into() } else { format!("<presence>{priority}</presence>") };
        }
        let aor = format!("sip:{}@{}", self.account.user, self.account.domain);
        format!(
            "<presence>{priority}{}<reach xmlns='urn:xmpp:reach:0'><addr uri='{}'/></reach></presence>",
            crate::client::xmpp::features::caps_element(&self.features()),
            escape(&aor, true)
        )
    }

    /// The SIP URIs in `jid`'s vCard (CUSAX-4), in order, each with whether it is typed video.
    pub(crate) async fn sip_uris_from_vcard(&mut self, jid: &str, deadline: Instant) -> Result<Vec<(String, bool)>, StepError> {
        let r = self.iq(&format!("type='get' to='{}'", escape(jid, true)), "<vCard xmlns='vcard-temp'/>", deadline).await?;
        let tels = r.child("vCard").filter(|_| r.attr("type") == Some("result")).map(sip_tels).unwrap_or_default();
        if tels.is_empty() {
            return fail(format!("{jid}'s vCard names no SIP URI in a TEL: {}", r.to_xml()));
        }
        Ok(tels)
    }

    /// Call a dual contact the CUSAX way: a SIP URI its vCard names (see [`call_target`]),
    /// video only when that TEL is typed video, and our XMPP address in Call-Info.
    pub(crate) async fn call_contact(&mut self, jid: &str, deadline: Instant) -> Result<(), StepError> {
        let own = format!("{}@{}", self.account.user, self.account.domain);
        self.call_claiming(jid, &own, deadline).await
    }

    /// XEP-0115 check of a contact: the `ver` in its latest presence equals the hash of the
    /// disco#info it answers (CAPS-1). Waits for a presence with caps from `jid` first.
    pub async fn verify_caps(&mut self, jid: &str, deadline: Instant) -> Result<(), StepError> {
        let presence = loop {
            if let Some(p) = self.last_presence.get(jid).filter(|p| p.child("c").is_some()) {
                break p.clone();
            }
            if self.next_xmpp(deadline).await?.is_none() {
                return fail(format!("no presence with entity caps from {jid}"));
            }
        };
        let c = presence.child("c").expect("checked above");
        let (full, node, ver) = (presence.attr("from").unwrap_or(jid).to_string(), c.attr("node").unwrap_or(""), c.attr("ver").unwrap_or(""));
        if c.attr("hash") != Some("sha-1") {
            return fail(format!("caps hash is {:?}, not sha-1", c.attr("hash")));
        }
        let query = format!("<query xmlns='http://jabber.org/protocol/disco#info' node='{}#{}'/>", escape(node, true), escape(ver, true));
        let ver = ver.to_string();
        let r = self.iq(&format!("type='get' to='{}'", escape(&full, true)), &query, deadline).await?;
        let Some(q) = r.child("query").filter(|_| r.attr("type") == Some("result")) else {
            return fail(format!("disco#info to {full} failed: {}", r.to_xml()));
        };
        let (ids, feats) = crate::client::xmpp::features::disco_info_of(q);
        let computed = crate::client::xmpp::features::caps_ver(&ids, &feats);
        if computed != ver {
            return fail(format!("{full} announces ver {ver} but its disco#info hashes to {computed}"));
        }
        Ok(())
    }

    /// RFC 7081 §3.5: an incoming call's `Call-Info: <xmpp:JID>;purpose=impp` is only trusted
    /// when JID's vCard names the SIP address the call comes from. The JID, or why not.
    pub(crate) async fn check_call_info(&mut self, from: &str, call_info: Option<&str>, deadline: Instant) -> Result<String, String> {
        let info = call_info.ok_or("the INVITE has no Call-Info")?;
        let jid = crate::sip::message::split_list(info)
            .into_iter()
            .filter(|v| crate::sip::message::header_param(v, "purpose").as_deref() == Some("impp"))
            .find_map(|v| crate::sip::message::addr_uri(&v).strip_prefix("xmpp:").map(str::to_string))
            .ok_or_else(|| format!("no xmpp: address with purpose=impp in Call-Info: {info}"))?;
        let caller = crate::sip::message::addr_uri(from).to_string();
        match self.sip_uris_from_vcard(&jid, deadline).await {
            Ok(tels) if tels.iter().any(|(uri, _)| *uri == caller) => Ok(jid),
            Ok(tels) => Err(format!("{jid}'s vCard names {}, but the call comes from {caller}", tels[0].0)),
            Err(StepError::Fail(e) | StepError::Error(e) | StepError::Inconclusive(e)) => Err(e),
        }
    }

    /// Check what the last incoming call's Call-Info came to: confirmed as `jid`, or (None)
    /// not confirmed.
    pub fn expect_caller(&self, jid: Option<&str>) -> Result<(), StepError> {
        match (&self.caller_identity, jid) {
            (None, _) => fail(format!("{} has not checked an incoming call's identity", self.name)),
            (Some(Ok(got)), Some(want)) if got == want => Ok(()),
            (Some(Err(_)), None) => Ok(()),
            (Some(Ok(got)), None) => fail(format!("the caller was confirmed as {got}, expected no confirmation")),
            (Some(Err(why)), Some(want)) => fail(format!("the caller was not confirmed as {want}: {why}")),
            (Some(Ok(got)), Some(want)) => fail(format!("the caller was confirmed as {got}, expected {want}")),
        }
    }

    /// RFC 7081 §7: a client whose SIP and XMPP legs differ in protection must tell its user.
    pub(crate) fn check_protection(&mut self) {
        let sip = format!("sip/{}", self.sip_transport.name());
        let sip_secured = self.sip_transport == crate::trace::frame::Transport::Tls;
        self.protection_warning = match (&self.xmpp_secured, sip_secured) {
            (Some(tls), false) => Some(format!(
                "the XMPP leg is under TLS ({tls}) but the SIP leg is plain ({sip}): calls are less protected than chats"
            )),
            (None, true) => Some("the SIP leg is under TLS but the XMPP leg is plain: chats are less protected than calls".into()),
            _ => None,
        };
        self.notices.extend(self.protection_warning.clone().map(|t| ("protection", t)));
    }

    /// The last vCard-driven call came with (or, with `warned` false, without) a caution.
    pub fn expect_call_caution(&self, warned: bool) -> Result<(), StepError> {
        match (&self.call_caution, warned) {
            (Some(_), true) | (None, false) => Ok(()),
            (None, true) => fail(format!("{} placed the call without a caution (RFC 7081 §5)", self.name)),
            (Some(w), false) => fail(format!("{} cautioned about an ordinary call: {w}", self.name)),
        }
    }

    /// The client warned about unequal protection (or, with `warned` false, did not).
    pub fn expect_protection_warning(&self, warned: bool) -> Result<(), StepError> {
        match (&self.protection_warning, warned) {
            (Some(_), true) | (None, false) => Ok(()),
            (None, true) => fail(format!("{} gave no protection warning (RFC 7081 §7)", self.name)),
            (Some(w), false) => fail(format!("{} warned although its legs are equally protected: {w}", self.name)),
        }
    }

    /// Call a contact, claiming `claimed` in Call-Info: our own JID, or another one for a
    /// spoofing caller (to test the callee's check).
    pub(crate) async fn call_claiming(&mut self, jid: &str, claimed: &str, deadline: Instant) -> Result<(), StepError> {
        let tels = self.sip_uris_from_vcard(jid, deadline).await?;
        let reach = self.last_presence.get(jid).map(reach_addrs).unwrap_or_default();
        let (uri, video) = call_target(&tels, &reach).expect("the vCard names at least one SIP URI");
        // The reference client's user always goes ahead; the warning is what is checked.
        self.call_caution = call_caution(&uri, &self.account.domain);
        self.notices.extend(self.call_caution.clone().map(|t| ("caution", t)));
        let info = format!("Call-Info: <xmpp:{claimed}>;purpose=impp\r\n");
        let id = self.on_ua(move |ua, now| ua.invite_with(now, &uri, video, &info)).await?;
        self.current_call = Some(id);
        Ok(())
    }

    /// sixpac's "on the phone" profile (not RFC 7081; actors declared `dual+onphone`): while a
    /// SIP call is up, the client publishes the XEP-0108 activity talking/on_the_phone over PEP, and an empty activity
    /// once the call has ended. Called for each call event; the publish is not waited for.
    pub(crate) fn on_the_phone(&mut self, ev: &crate::client::sip::ua::SipEvent) {
        use crate::client::sip::ua::SipEvent;
        if !self.on_phone_profile || self.xmpp.is_none() || self.xmpp_closed {
            return;
        }
        let activity = match ev {
            SipEvent::CallConfirmed { .. } => "<talking><on_the_phone/></talking>",
            SipEvent::CallEnded { reason, .. } if self.on_phone && !matches!(reason, crate::client::sip::ua::CallEnd::WeRejected(_)) => "",
            _ => return,
        };
        self.on_phone = !activity.is_empty();
        self.iq_seq += 1;
        let id = format!("sixpac-{}-{}", self.name, self.iq_seq);
        let _ = self.send_xmpp(format!(
            "<iq type='set' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='http://jabber.org/protocol/activity'><item><activity xmlns='http://jabber.org/protocol/activity'>{activity}</activity></item></publish></pubsub></iq>"
        ));
    }

    /// Chat: an XMPP chat message to the contact's bare JID. Misbehaving, a SIP MESSAGE.
    pub async fn chat(&mut self, jid: String, aor: String, text: String, deadline: Instant) -> Result<(), StepError> {
        if self.misbehave == Some(Misbehaviour::ChatOverSip) {
            return self.message(aor, text, deadline).await;
        }
        // XEP-0085: an advanced client marks its chat messages active.
        self.last_chat = Some(jid.clone());
        self.send(
            Wire::Xmpp,
            format!(
                "<message to='{}' type='chat'><body>{}</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
                escape(&jid, true),
                escape(&text, false)
            ),
        )
        .await
    }

    /// Escalate the current chat to a call: call the contact chatted with last, the CUSAX way.
    pub async fn escalate(&mut self, deadline: Instant) -> Result<(), StepError> {
        let Some(jid) = self.last_chat.clone() else { return fail(format!("{} has not chatted with anyone", self.name)) };
        self.call_contact(&jid, deadline).await
    }

    /// Broadcast presence with a show value and status text, keeping caps and the reach
    /// address a dual client always sends.
    pub async fn set_presence(&mut self, show: &str, status: &str) -> Result<(), StepError> {
        let mut extra = String::new();
        if show != "available" {
            extra.push_str(&format!("<show>{}</show>", escape(show, false)));
        }
        if !status.is_empty() {
            extra.push_str(&format!("<status>{}</status>", escape(status, false)));
        }
        let base = self.initial_presence();
        let presence = match base.strip_prefix("<presence>") {
            Some(rest) => format!("<presence>{extra}{rest}"),
            None => format!("<presence>{extra}</presence>"),
        };
        self.send(Wire::Xmpp, presence).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sip_uri_comes_from_a_tel_number() {
        let parse = |s: &str| crate::xml::parse(s.as_bytes(), &crate::xml::Scope::new(), false).unwrap();
        let v = parse("<vCard xmlns='vcard-temp'><TEL><HOME/><NUMBER>+1 555</NUMBER></TEL><TEL><VOICE/><VIDEO/><NUMBER>sip:a@x</NUMBER></TEL></vCard>");
        assert_eq!(sip_tels(&v), vec![("sip:a@x".into(), true)]);
        assert_eq!(sip_tels(&parse("<vCard xmlns='vcard-temp'><FN>x</FN></vCard>")), vec![]);
    }

    #[test]
    fn telephone_numbers_and_other_domains_get_a_caution() {
        assert_eq!(call_caution("sip:bob@example.test", "example.test"), None);
        assert_eq!(call_caution("sip:bob@EXAMPLE.test:5060;transport=tcp", "example.test"), None);
        assert!(call_caution("sip:+1-555-0100@example.test", "example.test").unwrap().contains("telephone"));
        assert!(call_caution("sip:5550100@example.test;user=phone", "example.test").unwrap().contains("telephone"));
        assert!(call_caution("sip:bob@other.test", "example.test").unwrap().contains("outside"));
        assert!(call_caution("tel:+15550100", "example.test").is_some());
    }

    #[test]
    fn the_call_goes_to_the_first_confirmed_reach_address() {
        let tels = vec![("sip:b@x".to_string(), false), ("sip:c@x".to_string(), true)];
        let reach = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(call_target(&tels, &reach(&["sip:m@x", "sip:c@x", "sip:b@x"])), Some(("sip:c@x".into(), true)));
        assert_eq!(call_target(&tels, &reach(&["sip:m@x"])), Some(("sip:b@x".into(), false)));
        assert_eq!(call_target(&tels, &[]), Some(("sip:b@x".into(), false)));
        assert_eq!(call_target(&[], &reach(&["sip:m@x"])), None);
        let p = crate::xml::parse(
            b"<presence xmlns='jabber:client'><reach xmlns='urn:xmpp:reach:0'><addr uri='sip:1'/><addr uri='sip:2'/></reach></presence>",
            &crate::xml::Scope::new(),
            false,
        )
        .unwrap();
        assert_eq!(reach_addrs(&p), reach(&["sip:1", "sip:2"]));
    }
}
