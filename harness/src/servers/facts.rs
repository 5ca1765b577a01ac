//! What a report says about each started server: how it was had, its version, its sockets.

use super::{images, ServerSet};
use crate::wire::{Proto, Transport};

/// Facts about one started server, for the summary.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ServerFacts {
    pub profile: String,
    pub name: String,
    pub kind: String,
    /// How it was had: process, container or external.
    pub backend: String,
    /// Start-to-ready; absent for external servers, which sixpac did not start.
    pub ready_ms: Option<u128>,
    /// The version the server itself reports on the wire.
    pub version: Option<String>,
    /// The container image id, for the container backend.
    pub image: Option<String>,
    /// The server's own sockets (which only the taps should reach).
    pub listens: Vec<Socket>,
    /// The taps in front of it: where clients connect.
    pub taps: Vec<Socket>,
    /// Debian package versions recorded on the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
}

/// One listening socket, as the summary lists it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Socket {
    pub proto: Proto,
    pub transport: Transport,
    pub addr: std::net::SocketAddr,
}

impl ServerSet {
    /// The facts of each server of the set.
    pub fn facts(&self) -> Vec<ServerFacts> {
        self.servers
            .iter()
            .map(|s| ServerFacts {
                profile: self.profile.name.clone(),
                name: s.name.clone(),
                kind: s.kind.name().into(),
                backend: self.backend.into(),
                ready_ms: s.process.is_some().then_some(s.ready_in.as_millis()),
                version: s.version.clone(),
                image: s.image.clone(),
                listens: s.listens(),
                taps: self
                    .taps
                    .iter()
                    .filter(|t| t.spec.server == s.name)
                    .map(|t| Socket { proto: t.spec.proto, transport: t.spec.transport, addr: t.listen })
                    .collect(),
                packages: s
                    .image
                    .as_ref()
                    .map(|_| images::package_labels(&images::tag_for(s.kind.name())))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(p, v)| format!("{p}={v}"))
                    .collect(),
            })
            .collect()
    }
}
