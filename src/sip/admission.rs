//! The decision on a new INVITE: take the call, ask the caller to prove an account, or
//! refuse, each with its reason.
//!
//! Pure: the endpoint gathers the facts (what the request is, who sent it, the registrar's
//! and the flood counter's verdicts, the server's load) as plain values, calls [`decide`],
//! and carries out the answer (the response, the metric, the log line, the call task).
//!
//! The registrar and the flood counter remember being asked (a nonce is used, a wrong
//! password counts towards a ban, an INVITE counts towards the limit), so the endpoint asks
//! them only when the checks before would let the INVITE through: [`Invite::refusal`] first,
//! then [`Sender::account_required`], then [`gate`]. A refused INVITE costs its sender
//! nothing further.

use crate::metrics::Refusal;
use crate::pike::Hit;

/// What the request is, as admission sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Invite {
    /// A live call already has its Call-ID: a looped or merged request (RFC 3261 §8.2.2.2).
    pub merged: bool,
    /// Max-Forwards is 0: a loop somewhere, and we would place calls on its behalf.
    pub no_hops_left: bool,
}

impl Invite {
    /// The refusal the request earns by itself, whoever sent it.
    pub fn refusal(&self) -> Option<Admission> {
        if self.merged {
            Some(Admission::refuse(482, Reason::Merged))
        } else if self.no_hops_left {
            // RFC 3261 §16.3 step 2, as a proxy would.
            Some(Admission::refuse(483, Reason::TooManyHops))
        } else {
            None
        }
    }
}

/// Who sent the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sender {
    /// New calls are taken only from the trunk's addresses and this is not one: the
    /// sender must prove an account (a secretary or an executive calling in).
    pub account_required: bool,
    /// The flood limit does not apply (the trunk brings everyone's calls).
    pub rate_exempt: bool,
}

/// The registrar's verdict on the request's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// Not asked: no account is required, or the request is refused before it matters.
    #[default]
    NotAsked,
    /// Proven: this account.
    Account(String),
    /// Not proven; the registrar's fresh challenges. `offered`: credentials came and were
    /// not accepted (wrong, stale or replayed), rather than none at all.
    Unproven {
        /// `WWW-Authenticate` values.
        challenges: Vec<String>,
        /// Whether the request carried credentials.
        offered: bool,
    },
    /// The source is banned for repeated wrong credentials (now, or by this attempt).
    Banned,
    /// No registrar: nobody can prove an account.
    NoAccounts,
}

/// The server's state, and the bounds it is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// The server is stopping.
    pub draining: bool,
    /// Calls now.
    pub live_calls: usize,
    /// Calls at once.
    pub max_calls: usize,
    /// Calls now from the request's source address.
    pub from_source: usize,
    /// Calls at once from one source address (0: no limit).
    pub max_calls_per_source: usize,
    /// The records are being written: a call we could not record is not taken.
    pub store_writing: bool,
    /// The media engine runs too late to take more streams.
    pub media_late: bool,
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// What the request is.
    pub invite: Invite,
    /// Who sent it.
    pub sender: Sender,
    /// Its credentials, when an account is required.
    pub auth: Auth,
    /// The flood counter's verdict on its source (`None`: not counted).
    pub flood: Option<Hit>,
    /// The server's state.
    pub load: Load,
}

/// The decision on a new INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Take the call, brought by this caller.
    Accept {
        /// Why it may bring a call.
        caller: Caller,
    },
    /// 401: prove an account with one of these challenges.
    Challenge {
        /// `WWW-Authenticate` values.
        challenges: Vec<String>,
        /// Why the caller is not known yet.
        reason: Unproven,
    },
    /// A final refusal: `status`, for `reason`.
    Refuse {
        /// The response status (482, 483, 403 or 503).
        status: u16,
        /// Why.
        reason: Reason,
    },
}

impl Admission {
    fn refuse(status: u16, reason: Reason) -> Admission {
        Admission::Refuse { status, reason }
    }
}

/// Who may bring a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No account needed: the trunk, or anyone when calls are not restricted to it.
    Trusted,
    /// Someone outside the trunk who proved this account.
    Account(String),
}

/// Why a caller who must prove an account has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unproven {
    /// The request carried no credentials.
    NoCredentials,
    /// It carried credentials the registrar did not accept (wrong, stale or replayed).
    CredentialsRefused,
}

/// Why a new INVITE is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// 482: a live call has its Call-ID.
    Merged,
    /// 483: Max-Forwards 0.
    TooManyHops,
    /// 403: outside the trunk, from a banned source.
    Banned,
    /// 403: outside the trunk, and no account can be proven.
    NoAccount,
    /// 503: more new INVITEs this second from its address than allowed; `first`: the
    /// first one over the limit this second (log it once).
    Flood {
        /// Whether it is the first over the limit.
        first: bool,
    },
    /// 503: the server cannot take a call now (stopping, full, records or media failing).
    Busy(Refusal),
}

impl Reason {
    /// The 503 refusal to count in the metrics, if it is one.
    pub fn refusal(self) -> Option<Refusal> {
        match self {
            Reason::Flood { .. } => Some(Refusal::Flood),
            Reason::Busy(why) => Some(why),
            Reason::Merged | Reason::TooManyHops | Reason::Banned | Reason::NoAccount => None,
        }
    }
}

/// Whether the sender may bring a call: who it is, or the answer that stops it.
pub fn gate(sender: &Sender, auth: &Auth) -> Result<Caller, Admission> {
    if !sender.account_required {
        return Ok(Caller::Trusted);
    }
    match auth {
        Auth::Account(user) => Ok(Caller::Account(user.clone())),
        Auth::Unproven {
            challenges,
            offered,
        } if !challenges.is_empty() => Err(Admission::Challenge {
            challenges: challenges.clone(),
            reason: if *offered {
                Unproven::CredentialsRefused
            } else {
                Unproven::NoCredentials
            },
        }),
        // A registrar that answers without a challenge has refused outright.
        Auth::Banned | Auth::Unproven { .. } => Err(Admission::refuse(403, Reason::Banned)),
        Auth::NoAccounts | Auth::NotAsked => Err(Admission::refuse(403, Reason::NoAccount)),
    }
}

/// What the load refuses, in order: stopping, full, full for this source, records
/// failing, media late.
fn busy(load: &Load) -> Option<Refusal> {
    let source_full =
        load.max_calls_per_source > 0 && load.from_source >= load.max_calls_per_source;
    if load.draining {
        Some(Refusal::Draining)
    } else if load.live_calls >= load.max_calls {
        Some(Refusal::MaxCalls)
    } else if source_full {
        Some(Refusal::PerSource)
    } else if !load.store_writing {
        Some(Refusal::StoreFailing)
    } else if load.media_late {
        Some(Refusal::MediaLate)
    } else {
        None
    }
}

/// Decides on a new INVITE (outside any dialog, already screened), in this order: the
/// request itself (482, 483), the sender's account where one is required (401, 403), the
/// flood limit (503), then the load (503).
pub fn decide(facts: &Facts) -> Admission {
    if let Some(refused) = facts.invite.refusal() {
        return refused;
    }
    let caller = match gate(&facts.sender, &facts.auth) {
        Ok(caller) => caller,
        Err(answer) => return answer,
    };
    if !facts.sender.rate_exempt
        && let Some(Hit::Over { first }) = facts.flood
    {
        return Admission::refuse(503, Reason::Flood { first });
    }
    if let Some(why) = busy(&facts.load) {
        return Admission::refuse(503, Reason::Busy(why));
    }
    Admission::Accept { caller }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle, healthy, room for one call.
    fn idle() -> Load {
        Load {
            draining: false,
            live_calls: 0,
            max_calls: 1,
            from_source: 0,
            max_calls_per_source: 0,
            store_writing: true,
            media_late: false,
        }
    }

    /// An INVITE from the trunk to an idle, healthy server.
    fn healthy() -> Facts {
        Facts {
            invite: Invite::default(),
            sender: Sender::default(),
            auth: Auth::NotAsked,
            flood: None,
            load: idle(),
        }
    }

    /// From outside the trunk, where calls are restricted to it.
    fn outsider(auth: Auth) -> Facts {
        Facts {
            sender: Sender {
                account_required: true,
                rate_exempt: false,
            },
            auth,
            ..healthy()
        }
    }

    fn challenges() -> Vec<String> {
        vec!["Digest realm=\"permanence\", nonce=\"n\"".to_string()]
    }

    fn busy_with(load: Load) -> Admission {
        decide(&Facts { load, ..healthy() })
    }

    fn refused(reason: Reason) -> Admission {
        let status = match reason {
            Reason::Merged => 482,
            Reason::TooManyHops => 483,
            Reason::Banned | Reason::NoAccount => 403,
            Reason::Flood { .. } | Reason::Busy(_) => 503,
        };
        Admission::Refuse { status, reason }
    }

    #[test]
    fn a_healthy_server_takes_a_call_from_the_trunk() {
        assert_eq!(
            decide(&healthy()),
            Admission::Accept {
                caller: Caller::Trusted
            }
        );
    }

    #[test]
    fn an_outsider_with_an_account_is_taken_as_that_account() {
        assert_eq!(
            decide(&outsider(Auth::Account("alice".into()))),
            Admission::Accept {
                caller: Caller::Account("alice".into())
            }
        );
    }

    #[test]
    fn an_outsider_without_credentials_is_challenged() {
        let facts = outsider(Auth::Unproven {
            challenges: challenges(),
            offered: false,
        });
        assert_eq!(
            decide(&facts),
            Admission::Challenge {
                challenges: challenges(),
                reason: Unproven::NoCredentials
            }
        );
    }

    #[test]
    fn wrong_credentials_are_challenged_again() {
        let facts = outsider(Auth::Unproven {
            challenges: challenges(),
            offered: true,
        });
        assert_eq!(
            decide(&facts),
            Admission::Challenge {
                challenges: challenges(),
                reason: Unproven::CredentialsRefused
            }
        );
    }

    #[test]
    fn a_banned_outsider_is_forbidden_and_not_challenged() {
        assert_eq!(decide(&outsider(Auth::Banned)), refused(Reason::Banned));
        let no_challenge = outsider(Auth::Unproven {
            challenges: Vec::new(),
            offered: true,
        });
        assert_eq!(decide(&no_challenge), refused(Reason::Banned));
    }

    #[test]
    fn without_accounts_an_outsider_is_forbidden() {
        assert_eq!(
            decide(&outsider(Auth::NoAccounts)),
            refused(Reason::NoAccount)
        );
        assert_eq!(
            decide(&outsider(Auth::NotAsked)),
            refused(Reason::NoAccount),
            "an unasked registrar proves nothing"
        );
    }

    #[test]
    fn credentials_are_ignored_where_no_account_is_required() {
        let facts = Facts {
            auth: Auth::Banned,
            ..healthy()
        };
        assert_eq!(
            decide(&facts),
            Admission::Accept {
                caller: Caller::Trusted
            }
        );
    }

    #[test]
    fn a_merged_or_looping_request_is_refused_before_anything_else() {
        let merged = Facts {
            invite: Invite {
                merged: true,
                no_hops_left: true,
            },
            ..outsider(Auth::Banned)
        };
        assert_eq!(decide(&merged), refused(Reason::Merged));
        let looping = Facts {
            invite: Invite {
                merged: false,
                no_hops_left: true,
            },
            ..outsider(Auth::Banned)
        };
        assert_eq!(decide(&looping), refused(Reason::TooManyHops));
    }

    #[test]
    fn a_flood_is_refused_and_its_first_refusal_marked() {
        for first in [true, false] {
            let facts = Facts {
                flood: Some(Hit::Over { first }),
                ..healthy()
            };
            assert_eq!(decide(&facts), refused(Reason::Flood { first }));
        }
        let within = Facts {
            flood: Some(Hit::Allowed),
            ..healthy()
        };
        assert!(matches!(decide(&within), Admission::Accept { .. }));
    }

    #[test]
    fn the_trunk_is_exempt_from_the_flood_limit() {
        let facts = Facts {
            sender: Sender {
                account_required: false,
                rate_exempt: true,
            },
            flood: Some(Hit::Over { first: true }),
            ..healthy()
        };
        assert_eq!(
            decide(&facts),
            Admission::Accept {
                caller: Caller::Trusted
            }
        );
    }

    #[test]
    fn the_account_comes_before_the_flood_limit_and_the_flood_before_the_load() {
        let challenged = Facts {
            flood: Some(Hit::Over { first: true }),
            ..outsider(Auth::Unproven {
                challenges: challenges(),
                offered: false,
            })
        };
        assert!(matches!(decide(&challenged), Admission::Challenge { .. }));
        let draining_flood = Facts {
            flood: Some(Hit::Over { first: false }),
            load: Load {
                draining: true,
                ..idle()
            },
            ..healthy()
        };
        assert_eq!(
            decide(&draining_flood),
            refused(Reason::Flood { first: false })
        );
    }

    #[test]
    fn a_draining_server_refuses() {
        let load = Load {
            draining: true,
            live_calls: 5,
            store_writing: false,
            ..idle()
        };
        assert_eq!(busy_with(load), refused(Reason::Busy(Refusal::Draining)));
    }

    #[test]
    fn over_capacity_is_refused() {
        let full = Load {
            live_calls: 3,
            max_calls: 3,
            ..idle()
        };
        assert_eq!(busy_with(full), refused(Reason::Busy(Refusal::MaxCalls)));
        let source_full = Load {
            live_calls: 2,
            max_calls: 10,
            from_source: 2,
            max_calls_per_source: 2,
            ..idle()
        };
        assert_eq!(
            busy_with(source_full),
            refused(Reason::Busy(Refusal::PerSource))
        );
        let no_source_limit = Load {
            max_calls: 10,
            from_source: 9,
            max_calls_per_source: 0,
            ..idle()
        };
        assert!(matches!(
            busy_with(no_source_limit),
            Admission::Accept { .. }
        ));
    }

    #[test]
    fn an_unhealthy_store_refuses() {
        let load = Load {
            store_writing: false,
            media_late: true,
            ..idle()
        };
        assert_eq!(
            busy_with(load),
            refused(Reason::Busy(Refusal::StoreFailing))
        );
    }

    #[test]
    fn a_lagging_engine_refuses() {
        let load = Load {
            media_late: true,
            ..idle()
        };
        assert_eq!(busy_with(load), refused(Reason::Busy(Refusal::MediaLate)));
    }

    #[test]
    fn only_503s_are_counted_as_refusals() {
        assert_eq!(
            Reason::Flood { first: false }.refusal(),
            Some(Refusal::Flood)
        );
        assert_eq!(
            Reason::Busy(Refusal::MediaLate).refusal(),
            Some(Refusal::MediaLate)
        );
        for reason in [
            Reason::Merged,
            Reason::TooManyHops,
            Reason::Banned,
            Reason::NoAccount,
        ] {
            assert_eq!(reason.refusal(), None);
        }
    }

    #[test]
    fn the_gate_passes_exactly_whom_the_flood_counter_may_count() {
        let trusted = Sender::default();
        assert_eq!(gate(&trusted, &Auth::NotAsked), Ok(Caller::Trusted));
        let outside = Sender {
            account_required: true,
            rate_exempt: false,
        };
        assert!(gate(&outside, &Auth::Account("bob".into())).is_ok());
        assert!(gate(&outside, &Auth::NotAsked).is_err());
        assert!(gate(&outside, &Auth::Banned).is_err());
    }
}
