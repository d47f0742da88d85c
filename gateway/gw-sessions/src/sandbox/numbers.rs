//! Number checks on the sandbox network. Every number is on WhatsApp (a sandbox account or a simulated external
//! contact) unless the sandbox's controls said it is not; a number that is not on WhatsApp cannot be messaged, as
//! on WhatsApp. A LID is known for a number once a contact wrote under one (`from_lid` of an injected message).

use crate::NumberCheck;

use super::{NetState, SandboxNetwork};

/// The phone-number JID of a number given as digits.
fn pn_jid(phone: &str) -> String {
    format!("{phone}@s.whatsapp.net")
}

impl NetState {
    /// Whether a chat JID (`digits@s.whatsapp.net`) names a number that is not on WhatsApp.
    pub(super) fn unregistered(&self, chat_jid: &str) -> bool {
        chat_jid.strip_suffix("@s.whatsapp.net").is_some_and(|phone| self.unregistered.contains(phone))
    }

    pub(super) fn check_numbers(&self, phones: &[String]) -> Vec<NumberCheck> {
        phones
            .iter()
            .map(|phone| {
                let on_whatsapp = !self.unregistered.contains(phone);
                let jid = on_whatsapp.then(|| pn_jid(phone));
                let lid = jid.as_ref().and_then(|jid| self.lids.get(jid).cloned());
                NumberCheck { phone: phone.clone(), on_whatsapp, jid, lid }
            })
            .collect()
    }
}

impl SandboxNetwork {
    /// Sets whether these numbers (digits only, country code first) are on WhatsApp.
    pub fn set_on_whatsapp(&self, phones: &[String], on_whatsapp: bool) {
        let mut state = self.lock();
        for phone in phones {
            if on_whatsapp {
                state.unregistered.remove(phone);
            } else {
                state.unregistered.insert(phone.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_on_whatsapp_unless_marked_and_lids_show_once_known() {
        let network = SandboxNetwork::new();
        let phones = vec!["15550001111".to_owned(), "15550002222".to_owned()];
        network.set_on_whatsapp(&phones[1..], false);
        network.lock().lids.insert("15550001111@s.whatsapp.net".into(), "99887766@lid".into());
        let checks = network.lock().check_numbers(&phones);
        assert_eq!(
            checks,
            vec![
                NumberCheck {
                    phone: "15550001111".into(),
                    on_whatsapp: true,
                    jid: Some("15550001111@s.whatsapp.net".into()),
                    lid: Some("99887766@lid".into()),
                },
                NumberCheck { phone: "15550002222".into(), on_whatsapp: false, jid: None, lid: None },
            ]
        );
        assert!(network.lock().unregistered("15550002222@s.whatsapp.net"));
        network.set_on_whatsapp(&phones[1..], true);
        assert!(network.lock().check_numbers(&phones).iter().all(|c| c.on_whatsapp));
    }
}
