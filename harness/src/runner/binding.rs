//! Who plays an actor: the reference client in this process, or a client under test behind a
//! driver process. The runner hands either one intents and looks at the wire for the rest.

use super::actor::{Actor, Endpoints, StepError};
use super::driver::Driver;
use super::intent::{Intent, Setup};
use crate::scenario::Wire;
use std::time::Duration;
use tokio::time::Instant;

/// How long the reference client may take to see what its tap already forwarded.
const CLIENT_CATCH_UP: Duration = Duration::from_secs(1);

/// One actor's client.
pub enum Binding {
    Reference(Box<Actor>),
    Driver(Box<Driver>),
}

impl Binding {
    /// Carry out an intent within `within`.
    pub async fn perform(&mut self, intent: &Intent, setup: &Setup, ep: &Endpoints, within: Duration) -> Result<(), StepError> {
        match self {
            Binding::Reference(a) => a.perform(intent, ep).await,
            Binding::Driver(d) => {
                if let Some(verdict) = d.judge_told(intent) {
                    return verdict;
                }
                let r = d.perform(intent, setup, within).await;
                // The command's own failure is the one to tell: a driver it broke (and killed)
                // also closes its output, which the events would report as an exit.
                let events = d.take_events();
                r.and(events)
            }
        }
    }

    /// Let the client take in what reaches it until `until` (the reference client reacts
    /// only when it is given the chance; a driver's client runs on its own).
    pub async fn pump(&mut self, until: Instant) -> Result<(), StepError> {
        match self {
            Binding::Reference(a) => a.pump(until).await,
            Binding::Driver(d) => {
                d.take_events()?;
                tokio::time::sleep_until(until).await;
                Ok(())
            }
        }
    }

    /// After the wire showed a frame matching `pattern` reach the actor: let the reference
    /// client take it in too, so that its next action starts from it.
    pub async fn caught_up(&mut self, wire: Wire, pattern: &str) {
        if let Binding::Reference(a) = self {
            let _ = a.receive(wire, pattern, Instant::now() + CLIENT_CATCH_UP).await;
        }
    }

    /// What the client told its user and the run has not shown yet.
    pub fn take_notices(&mut self) -> Vec<String> {
        match self {
            Binding::Reference(a) => a.take_notices(),
            Binding::Driver(d) => d.take_notices(),
        }
    }

    /// At the scenario's end: log out if still logged in, and end a driver.
    pub async fn finish(&mut self, setup: &Setup) {
        match self {
            Binding::Reference(a) => {
                let _ = a.disconnect(Instant::now() + super::CLOSE_DEADLINE).await;
            }
            Binding::Driver(d) => {
                if d.can("disconnect") {
                    let _ = d.perform(&Intent::Disconnect, setup, super::CLOSE_DEADLINE).await;
                }
                d.stop().await;
            }
        }
    }

    /// At the end of a scenario whose servers died or hang: no logging out, which could only
    /// wait; a driver is ended at once.
    pub async fn abandon(&mut self) {
        if let Binding::Driver(d) = self {
            d.stop().await;
        }
    }

    /// The client's log, for a driver.
    pub fn log(&self) -> Option<String> {
        match self {
            Binding::Reference(_) => None,
            Binding::Driver(d) => Some(d.log()),
        }
    }
}
