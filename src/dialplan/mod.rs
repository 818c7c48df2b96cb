//! Dial plans: one TOML file per client company, loaded into an immutable [`Plans`]
//! snapshot that calls read and never change.
//!
//! Pure: `load` reads files into plain data; deciding which company a number reaches and
//! which route and steps a call takes is a function of (plans, call facts).

mod load;

pub use load::{PlanError, load_dir};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::number::{Country, Dialled, E164};

/// A client company's identifier, as written in its plan (`acme`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CompanyId(pub String);

impl std::fmt::Display for CompanyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the executive should read a call's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Needs the executive now.
    Urgent,
    /// An ordinary message.
    #[default]
    Normal,
    /// Can wait.
    Low,
    /// Set aside.
    Spam,
}

impl Category {
    /// The word stored in SQLite and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Urgent => "urgent",
            Category::Normal => "normal",
            Category::Low => "low",
            Category::Spam => "spam",
        }
    }
}

/// A sound, named by its path under the sounds directory (`acme/welcome.wav`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SoundName(pub String);

/// One thing a call does, in order. A step that cannot complete falls through to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send 180 Ringing and wait before answering.
    Ring {
        /// How long to ring.
        seconds: u32,
    },
    /// Answer if needed, then play a sound `times` times.
    Play {
        /// The sound.
        sound: SoundName,
        /// How many times in a row (at least 1).
        times: u32,
    },
    /// End the call.
    Hangup,
}

/// A named list of steps, chosen for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The operator's name for it, recorded with the call.
    pub name: String,
    /// What happens, in order.
    pub steps: Vec<Step>,
    /// How the call's message is filed.
    pub category: Category,
}

/// One client company's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Company {
    /// Identifier.
    pub id: CompanyId,
    /// Display name (`ACME Plomberie`).
    pub name: String,
    /// The numbers that reach it.
    pub numbers: Vec<E164>,
    /// Its country, for national number forms.
    pub country: Country,
    /// IANA time zone of its office.
    pub timezone: String,
    /// Language of its prompts (`fr`, `en`).
    pub language: String,
    /// What the secretary says on picking up.
    pub answer_as: String,
    /// Routes in order; the first that matches wins.
    pub routes: Vec<Route>,
    /// The file it came from.
    pub file: PathBuf,
}

impl Company {
    /// The route for a call: the first one (conditions arrive with the full plan language).
    pub fn route(&self) -> Option<&Route> {
        self.routes.first()
    }
}

/// Every company's plan: an immutable snapshot, swapped whole on reload.
#[derive(Debug, Default)]
pub struct Plans {
    companies: Vec<Arc<Company>>,
    by_number: HashMap<E164, Arc<Company>>,
    by_national: HashMap<String, Arc<Company>>,
}

impl Plans {
    /// Builds the lookup tables. Callers have already refused duplicate numbers.
    fn new(companies: Vec<Company>) -> Plans {
        let companies: Vec<Arc<Company>> = companies.into_iter().map(Arc::new).collect();
        let mut by_number = HashMap::new();
        let mut by_national = HashMap::new();
        for company in &companies {
            for number in &company.numbers {
                by_number.insert(number.clone(), Arc::clone(company));
                if let Some(national) = company.country.national_form(number) {
                    by_national.insert(national, Arc::clone(company));
                }
            }
        }
        Plans {
            companies,
            by_number,
            by_national,
        }
    }

    /// The company a dialled number reaches, in international or national form.
    pub fn lookup(&self, dialled: &Dialled) -> Option<&Arc<Company>> {
        match dialled {
            Dialled::International(n) => self.by_number.get(n),
            Dialled::National(n) => self.by_national.get(n),
        }
    }

    /// All companies, in file order.
    pub fn companies(&self) -> &[Arc<Company>] {
        &self.companies
    }

    /// Every sound any plan uses.
    pub fn sounds(&self) -> impl Iterator<Item = &SoundName> {
        self.companies
            .iter()
            .flat_map(|c| c.routes.iter())
            .flat_map(|r| r.steps.iter())
            .filter_map(|s| match s {
                Step::Play { sound, .. } => Some(sound),
                _ => None,
            })
    }
}
