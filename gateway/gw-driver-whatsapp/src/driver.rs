//! [`WhatsAppDriver`]: one whatsapp-rust client per `connect`, with the gateway's storage backend, events
//! translated by [`crate::events`], and inbound messages acknowledged to WhatsApp only after the engine completed
//! their [`InboundAck`].
//!
//! A connection is one attempt: the library's own reconnect loop is switched off, because the engine owns
//! reconnection, backoff and `lastError`. When the attempt ends the connection reports why (a `Disconnected`,
//! `LoggedOut`, ... event) and closes its event channel.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gw_core::{InstanceId, MediaInfo, MessageKind, Timestamp};
use gw_sessions::{
    AuthVault, ConnectRequest, Connection, Driver, DriverError, DriverEvents, GroupInfo, NumberCheck, OutgoingContent,
    OutgoingMessage, Presence, SentMessage,
};
use gw_store::Store;
use tokio::sync::{Mutex, mpsc};
use tracing::{Instrument, info_span, warn};
use whatsapp_rust::bot::Bot;
use whatsapp_rust::buffa::MessageField;
use whatsapp_rust::client::Client;
use whatsapp_rust::http::UreqHttpClient;
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{ChatStateType, SendError, SendOptions, TokioRuntime, UploadOptions};

use crate::backend::GatewayBackend;
use crate::config::{ConfigError, WhatsAppDriverConfig};
use crate::crypto::StateCipher;
use crate::events;
use crate::inbound::{AckAfterEngine, ConnectionEvents, DialRecorder, InlineForwarder, Pumped, pump};

/// The `whatsapp` driver. Cheap to clone behind an `Arc`; holds no per-instance state.
pub struct WhatsAppDriver {
    config: WhatsAppDriverConfig,
    cipher: StateCipher,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for WhatsAppDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppDriver").field("config", &self.config).finish_non_exhaustive()
    }
}

impl WhatsAppDriver {
    pub fn new(config: WhatsAppDriverConfig, store: Arc<dyn Store>) -> Result<Self, ConfigError> {
        let cipher = StateCipher::from_base64(config.encryption_key.expose())?;
        if let Some(url) = &config.ws_url
            && !(url.starts_with("ws://") || url.starts_with("wss://"))
        {
            return Err(ConfigError::WsUrl(url.clone()));
        }
        if config.event_buffer == 0 {
            return Err(ConfigError::EventBuffer);
        }
        Ok(Self { config, cipher, store })
    }
}

#[async_trait::async_trait]
impl Driver for WhatsAppDriver {
    async fn connect(
        &self,
        request: ConnectRequest,
        vault: Arc<dyn AuthVault>,
    ) -> Result<(Box<dyn Connection>, DriverEvents), DriverError> {
        let instance_id = request.instance_id;
        let span = info_span!("whatsapp.connection", instance = %instance_id);
        let (tx, rx) = mpsc::channel(self.config.event_buffer);
        let sink = Arc::new(ConnectionEvents::new(tx));

        let backend = GatewayBackend::new(instance_id, self.store.clone(), vault.clone(), self.cipher.clone());
        let cleanup = GatewayBackend::new(instance_id, self.store.clone(), vault.clone(), self.cipher.clone());
        let forget = GatewayBackend::new(instance_id, self.store.clone(), vault, self.cipher.clone());
        let mut factory = whatsapp_rust::transport::TokioWebSocketTransportFactory::new();
        let url = match &self.config.ws_url {
            Some(url) => {
                factory = factory.with_url(url.clone());
                url.clone()
            }
            None => "wss://web.whatsapp.com/ws/chat".to_owned(),
        };
        let last_dial_error = Arc::new(std::sync::Mutex::new(None));
        let recorder = DialRecorder { inner: factory, url, last_error: last_dial_error.clone() };

        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let mut builder = Bot::builder()
            .with_backend(backend)
            .with_transport_factory(recorder)
            .with_http_client(UreqHttpClient::new())
            .with_runtime(TokioRuntime)
            .with_inbound_durability_hook(AckAfterEngine {
                sink: sink.clone(),
                timeout: Duration::from_secs(self.config.inbound_ack_timeout_secs),
            })
            // The gateway stores live traffic; importing years of chat history is not its job.
            .skip_history_sync()
            .with_event_handler(InlineForwarder(queue_tx.clone()));
        if let Some(version) = self.config.version {
            builder = builder.with_version(version);
        }
        let bot = builder.build().instrument(span.clone()).await.map_err(start_error)?;
        let client = bot.client();
        // The engine reconnects with its own backoff; two reconnect loops would fight. One consequence: after a
        // successful pairing WhatsApp's restart (stream error 515) ends this connection too, reported as such.
        client.enable_auto_reconnect.store(false, Ordering::Relaxed);

        tokio::spawn(pump(queue_rx, sink.clone(), client.clone(), last_dial_error, cleanup).instrument(span.clone()));
        let run = tokio::spawn(
            async move {
                bot.run().await;
                let _ = queue_tx.send(Pumped::Ended);
            }
            .instrument(span.clone()),
        );

        let connection = WhatsAppConnection { instance_id, client, sink, forget, run: Mutex::new(Some(run)) };
        Ok((Box::new(connection), rx))
    }
}

/// An open (or opening) connection of one instance.
pub struct WhatsAppConnection {
    instance_id: InstanceId,
    client: Arc<Client>,
    sink: Arc<ConnectionEvents>,
    /// Deletes the protocol state and invalidates the auth state after a logout.
    forget: GatewayBackend,
    run: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for WhatsAppConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppConnection").field("instance_id", &self.instance_id).finish_non_exhaustive()
    }
}

/// A client that cannot start because the stored device record does not decrypt will not start on a retry
/// either: that needs a person (the right key, or a new pairing). Anything else (the database) may recover.
fn start_error(err: whatsapp_rust::bot::BotBuilderError) -> DriverError {
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        chain.push_str(": ");
        chain.push_str(&inner.to_string());
        source = inner.source();
    }
    if chain.contains("failed authentication") {
        DriverError::Other(format!(
            "the stored WhatsApp session cannot be decrypted with the configured whatsapp.encryption_key: {chain}"
        ))
    } else {
        DriverError::Transient(format!("cannot start the whatsapp client: {chain}"))
    }
}

fn recipient(jid: &str) -> Result<whatsapp_rust::Jid, DriverError> {
    events::parse_jid(jid).ok_or_else(|| DriverError::InvalidRecipient(format!("not a WhatsApp JID: {jid:?}")))
}

fn send_error(err: SendError) -> DriverError {
    match err {
        SendError::NotLoggedIn => DriverError::NotConnected,
        SendError::InvalidRequest(reason) => DriverError::InvalidRecipient(reason),
        SendError::Client(whatsapp_rust::ClientError::NotConnected) => DriverError::NotConnected,
        SendError::Client(other) => DriverError::Transient(other.to_string()),
        SendError::Iq(err) => DriverError::Transient(format!("IQ failed: {err}")),
        other => DriverError::Other(other.to_string()),
    }
}

fn other(context: &str) -> impl FnOnce(String) -> DriverError + '_ {
    move |err| DriverError::Other(format!("{context}: {err}"))
}

fn media_type(kind: MessageKind) -> Result<whatsapp_rust::download::MediaType, DriverError> {
    use whatsapp_rust::download::MediaType;
    match kind {
        MessageKind::Image => Ok(MediaType::Image),
        MessageKind::Video => Ok(MediaType::Video),
        MessageKind::Audio => Ok(MediaType::Audio),
        MessageKind::Document => Ok(MediaType::Document),
        MessageKind::Sticker => Ok(MediaType::Sticker),
        other => Err(DriverError::Unsupported(format!("media of kind {other:?}"))),
    }
}

fn context(quoted: Option<&String>) -> MessageField<wa::ContextInfo> {
    // Only the id is known here (the contract carries no quoted body or author): WhatsApp links the reply by id.
    match quoted {
        Some(id) => MessageField::some(wa::ContextInfo { stanza_id: Some(id.clone()), ..Default::default() }),
        None => MessageField::none(),
    }
}

/// The message that carries uploaded media: a proto type per kind, each with the same upload fields.
fn media_message(
    kind: MessageKind,
    uploaded: &whatsapp_rust::upload::UploadResponse,
    info: &MediaInfo,
    caption: Option<String>,
    ctx: MessageField<wa::ContextInfo>,
) -> Result<wa::Message, DriverError> {
    macro_rules! uploaded {
        ($proto:ident { $($field:ident: $value:expr),* $(,)? }) => {
            MessageField::some(wa::message::$proto {
                url: Some(uploaded.url.clone()),
                direct_path: Some(uploaded.direct_path.clone()),
                media_key: Some(uploaded.media_key.to_vec()),
                file_enc_sha256: Some(uploaded.file_enc_sha256.to_vec()),
                file_sha256: Some(uploaded.file_sha256.to_vec()),
                file_length: Some(uploaded.file_length),
                media_key_timestamp: Some(uploaded.media_key_timestamp),
                mimetype: Some(info.mime_type.clone()),
                context_info: ctx,
                $($field: $value,)*
                ..Default::default()
            })
        };
    }
    let mut m = wa::Message::default();
    match kind {
        MessageKind::Image => m.image_message = uploaded!(ImageMessage { caption: caption }),
        MessageKind::Video => m.video_message = uploaded!(VideoMessage { caption: caption }),
        MessageKind::Audio => m.audio_message = uploaded!(AudioMessage {}),
        MessageKind::Document => {
            m.document_message = uploaded!(DocumentMessage { caption: caption, file_name: info.file_name.clone() })
        }
        MessageKind::Sticker => m.sticker_message = uploaded!(StickerMessage {}),
        other => return Err(DriverError::Unsupported(format!("media of kind {other:?}"))),
    }
    Ok(m)
}

impl WhatsAppConnection {
    fn ready(&self) -> Result<(), DriverError> {
        if self.client.is_connected() && self.client.is_logged_in() { Ok(()) } else { Err(DriverError::NotConnected) }
    }

    async fn build_message(
        &self,
        message: &OutgoingMessage,
        chat: &whatsapp_rust::Jid,
    ) -> Result<wa::Message, DriverError> {
        let ctx = context(message.quoted_message_id.as_ref());
        Ok(match &message.content {
            OutgoingContent::Text { body } => {
                if message.quoted_message_id.is_none() {
                    wa::Message { conversation: Some(body.clone()), ..Default::default() }
                } else {
                    wa::Message {
                        extended_text_message: MessageField::some(wa::message::ExtendedTextMessage {
                            text: Some(body.clone()),
                            context_info: ctx,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                }
            }
            OutgoingContent::Location { latitude, longitude, name, address } => wa::Message {
                location_message: MessageField::some(wa::message::LocationMessage {
                    degrees_latitude: Some(*latitude),
                    degrees_longitude: Some(*longitude),
                    name: name.clone(),
                    address: address.clone(),
                    context_info: ctx,
                    ..Default::default()
                }),
                ..Default::default()
            },
            OutgoingContent::ContactCard { display_name, vcard } => wa::Message {
                contact_message: MessageField::some(wa::message::ContactMessage {
                    display_name: Some(display_name.clone()),
                    vcard: Some(vcard.clone()),
                    context_info: ctx,
                    ..Default::default()
                }),
                ..Default::default()
            },
            OutgoingContent::Reaction { target_message_id, emoji } => {
                // The contract names only the target's id: the key assumes a message the peer sent in this chat,
                // the common case of reacting to an inbound message.
                let key = wa::MessageKey {
                    remote_jid: Some(chat.to_string()),
                    from_me: Some(false),
                    id: Some(target_message_id.clone()),
                    ..Default::default()
                };
                whatsapp_rust::wacore::proto_helpers::build_reaction_message(
                    key,
                    emoji.clone(),
                    Timestamp::now().as_datetime().timestamp_millis(),
                )
            }
            OutgoingContent::Media { kind, info, bytes, caption } => {
                let uploaded = self
                    .client
                    .upload(bytes.to_vec(), media_type(*kind)?, UploadOptions::default())
                    .await
                    .map_err(|e| DriverError::Transient(format!("media upload failed: {e:#}")))?;
                media_message(*kind, &uploaded, info, caption.clone(), ctx)?
            }
        })
    }
}

#[async_trait::async_trait]
impl Connection for WhatsAppConnection {
    #[tracing::instrument(skip_all, fields(instance = %self.instance_id), err)]
    async fn send(&self, message: OutgoingMessage) -> Result<SentMessage, DriverError> {
        let chat = recipient(&message.chat_jid)?;
        self.ready()?;
        let built = self.build_message(&message, &chat).await?;
        // The engine's id, not one whatsapp-rust would generate per call: a message sent again after a crash
        // carries the same id, and WhatsApp drops the copy at the recipient.
        let options = SendOptions::default().with_message_id(message.wa_message_id.clone());
        let sent = self.client.send_message_with_options(chat, built, options).await.map_err(send_error)?;
        Ok(SentMessage { wa_message_id: sent.message_id, timestamp: Timestamp::now() })
    }

    #[tracing::instrument(skip_all, fields(instance = %self.instance_id), err)]
    async fn mark_read(&self, chat_jid: &str, wa_message_ids: &[String]) -> Result<(), DriverError> {
        let chat = recipient(chat_jid)?;
        self.ready()?;
        let ids: Vec<&str> = wa_message_ids.iter().map(String::as_str).collect();
        // In groups WhatsApp wants each message's author; the contract carries only ids, so the receipt goes
        // without it, as for a direct chat.
        self.client.mark_as_read(&chat, None, &ids).await.map_err(|e| DriverError::Transient(format!("{e:#}")))
    }

    #[tracing::instrument(skip_all, fields(instance = %self.instance_id), err)]
    async fn send_presence(&self, chat_jid: &str, presence: Presence) -> Result<(), DriverError> {
        self.ready()?;
        let state = match presence {
            Presence::Available => {
                return self.client.presence().set_available().await.map_err(|e| other("presence")(e.to_string()));
            }
            Presence::Unavailable => {
                return self.client.presence().set_unavailable().await.map_err(|e| other("presence")(e.to_string()));
            }
            Presence::Composing => ChatStateType::Composing,
            Presence::Recording => ChatStateType::Recording,
            Presence::Paused => ChatStateType::Paused,
        };
        let chat = recipient(chat_jid)?;
        self.client.chatstate().send(&chat, state).await.map_err(|e| other("chat state")(e.to_string()))
    }

    #[tracing::instrument(skip_all, fields(instance = %self.instance_id), err)]
    async fn set_blocked(&self, jid: &str, blocked: bool) -> Result<(), DriverError> {
        let jid = recipient(jid)?;
        self.ready()?;
        let result =
            if blocked { self.client.blocking().block(&jid).await } else { self.client.blocking().unblock(&jid).await };
        result.map_err(|e| other("block list")(e.to_string()))
    }

    #[tracing::instrument(skip_all, fields(instance = %self.instance_id), err)]
    async fn check_numbers(&self, phones: &[String]) -> Result<Vec<NumberCheck>, DriverError> {
        self.ready()?;
        crate::contacts_check::check_numbers(&self.client, phones).await
    }

    #[tracing::instrument(skip_all, fields(instance = %self.instance_id), err)]
    async fn groups(&self) -> Result<Vec<GroupInfo>, DriverError> {
        self.ready()?;
        let groups = self.client.groups().get_participating().await.map_err(|e| other("groups")(e.to_string()))?;
        let mut out: Vec<GroupInfo> = groups
            .into_values()
            .map(|g| GroupInfo {
                jid: g.id.to_string(),
                subject: g.subject.clone(),
                participants: g.participants.iter().map(|p| p.jid.to_non_ad().to_string()).collect(),
                admins: g.participants.iter().filter(|p| p.is_admin()).map(|p| p.jid.to_non_ad().to_string()).collect(),
            })
            .collect();
        out.sort_by(|a, b| a.jid.cmp(&b.jid));
        Ok(out)
    }

    #[tracing::instrument(skip_all, fields(instance = %self.instance_id), err)]
    async fn request_pair_code(&self, phone: &str) -> Result<String, DriverError> {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < 7 {
            return Err(DriverError::InvalidRecipient(format!("not a phone number: {phone:?}")));
        }
        if !self.client.is_connected() {
            // The code is requested over the open (not yet logged in) socket, after the first QR code arrived.
            return Err(DriverError::NotConnected);
        }
        let options = PairCodeOptions { phone_number: digits, ..Default::default() };
        self.client.pair_with_code(options).await.map_err(|e| DriverError::Transient(format!("pairing code: {e}")))
    }

    #[tracing::instrument(skip_all, fields(instance = %self.instance_id), err)]
    async fn logout(&self) -> Result<(), DriverError> {
        // Removes this companion device on the phone's side (when connected), reports LoggedOut, then disconnects.
        self.client.logout().await;
        self.wait_for_end().await;
        // Also when the connection had already ended and nobody was left to see the LoggedOut: the session is over.
        self.forget.forget_session().await.map_err(|e| DriverError::Other(format!("forgetting the session: {e}")))
    }

    #[tracing::instrument(skip_all, fields(instance = %self.instance_id))]
    async fn disconnect(&self) {
        self.client.disconnect().await;
        self.wait_for_end().await;
    }
}

impl Drop for WhatsAppConnection {
    fn drop(&mut self) {
        // A connection dropped without `disconnect` must not keep a socket open for an instance nobody drives.
        if let Ok(run) = self.run.try_lock()
            && run.as_ref().is_some_and(|task| !task.is_finished())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let client = self.client.clone();
            runtime.spawn(async move { client.disconnect().await });
        }
    }
}

impl WhatsAppConnection {
    async fn wait_for_end(&self) {
        if let Some(run) = self.run.lock().await.take()
            && let Err(err) = run.await
        {
            warn!(instance = %self.instance_id, "whatsapp connection task failed: {err}");
            self.sink.close();
        }
    }
}
