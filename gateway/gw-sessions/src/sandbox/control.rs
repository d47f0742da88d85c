//! The sandbox's control API, the same whether the network runs in this process or in a shared
//! `gateway sandbox-network` process: the HTTP controls hold an `Arc<dyn SandboxControl>` and never know which.

use std::time::Duration;

use gw_core::InstanceId;
use serde::{Deserialize, Serialize};

use super::{SandboxDelivery, SandboxError, SandboxNetwork};

/// A message from a simulated contact to an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInbound {
    pub instance_id: InstanceId,
    /// The sender's JID.
    pub from: String,
    /// Write under this LID, with `from` as its phone-number mapping, as WhatsApp does for many users.
    pub from_lid: Option<String>,
    pub push_name: Option<String>,
    pub text: String,
}

/// What became of an injected message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundOutcome {
    pub wa_message_id: String,
    /// The instance's gateway stored the message within the wait.
    pub acknowledged: bool,
}

/// Plays the phone and the rest of the simulated network.
#[async_trait::async_trait]
pub trait SandboxControl: Send + Sync + std::fmt::Debug {
    /// The phone scans the QR code (or types the pairing code): the instance gets a number and connects.
    async fn scan(&self, instance_id: InstanceId, display_name: Option<String>) -> Result<String, SandboxError>;
    /// Delivers a message from a simulated contact and waits up to `wait` for the instance's gateway to store it.
    async fn inbound(&self, message: SandboxInbound, wait: Duration) -> Result<InboundOutcome, SandboxError>;
    /// A network blip: the connection drops, the session stays valid.
    async fn drop_connection(&self, instance_id: InstanceId) -> Result<(), SandboxError>;
    /// The phone removes the linked device.
    async fn unlink(&self, instance_id: InstanceId) -> Result<(), SandboxError>;
    /// The same credentials connect from elsewhere.
    async fn replace(&self, instance_id: InstanceId) -> Result<(), SandboxError>;
    /// A group of sandbox accounts and simulated contacts; returns its JID.
    async fn create_group(
        &self,
        subject: String,
        participants: Vec<String>,
        admins: Vec<String>,
    ) -> Result<String, SandboxError>;
    /// What `jid` received, oldest first, each message id once.
    async fn received(&self, jid: String) -> Result<Vec<SandboxDelivery>, SandboxError>;
    /// Sets whether these numbers (digits only) are on WhatsApp; every number is until told otherwise.
    async fn set_on_whatsapp(&self, phones: Vec<String>, on_whatsapp: bool) -> Result<(), SandboxError>;
}

#[async_trait::async_trait]
impl SandboxControl for SandboxNetwork {
    async fn scan(&self, instance_id: InstanceId, display_name: Option<String>) -> Result<String, SandboxError> {
        SandboxNetwork::scan(self, instance_id, display_name).await
    }

    async fn inbound(&self, message: SandboxInbound, wait: Duration) -> Result<InboundOutcome, SandboxError> {
        let SandboxInbound { instance_id, from, from_lid, push_name, text } = message;
        let (wa_message_id, acked) =
            self.inject_inbound(instance_id, &from, from_lid.as_deref(), push_name, &text).await?;
        let acknowledged = matches!(tokio::time::timeout(wait, acked).await, Ok(Ok(())));
        Ok(InboundOutcome { wa_message_id, acknowledged })
    }

    async fn drop_connection(&self, instance_id: InstanceId) -> Result<(), SandboxError> {
        SandboxNetwork::drop_connection(self, instance_id)
    }

    async fn unlink(&self, instance_id: InstanceId) -> Result<(), SandboxError> {
        SandboxNetwork::unlink(self, instance_id)
    }

    async fn replace(&self, instance_id: InstanceId) -> Result<(), SandboxError> {
        SandboxNetwork::replace(self, instance_id)
    }

    async fn create_group(
        &self,
        subject: String,
        participants: Vec<String>,
        admins: Vec<String>,
    ) -> Result<String, SandboxError> {
        Ok(SandboxNetwork::create_group(self, &subject, &participants, &admins))
    }

    async fn received(&self, jid: String) -> Result<Vec<SandboxDelivery>, SandboxError> {
        Ok(SandboxNetwork::received(self, &jid))
    }

    async fn set_on_whatsapp(&self, phones: Vec<String>, on_whatsapp: bool) -> Result<(), SandboxError> {
        SandboxNetwork::set_on_whatsapp(self, &phones, on_whatsapp);
        Ok(())
    }
}
