//! Reading `dialplans/*.toml` into [`Plans`], refusing any file that is wrong with
//! `file:line:column: what is wrong; what was expected`.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor, value::MapAccessDeserializer};
use toml::Spanned;

use super::{Category, Company, CompanyId, Plans, Route, SoundName, Step};
use crate::number::{Country, E164};

/// One thing wrong in a plan, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for PlanError {}

/// Longest ring we accept before answering; a trunk gives up long before (RFC 3261 Timer C is 3 min).
const MAX_RING_SECONDS: u32 = 120;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    company: RawCompany,
    #[serde(default, rename = "route")]
    routes: Vec<Spanned<RawRoute>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompany {
    id: Spanned<String>,
    name: String,
    numbers: Spanned<Vec<Spanned<String>>>,
    #[serde(default = "default_country")]
    country: Spanned<String>,
    #[serde(default = "default_timezone")]
    timezone: Spanned<String>,
    #[serde(default = "default_language")]
    language: String,
    answer_as: Option<String>,
}

fn default_country() -> Spanned<String> {
    Spanned::new(0..0, "FR".into())
}
fn default_timezone() -> Spanned<String> {
    Spanned::new(0..0, "Europe/Paris".into())
}
fn default_language() -> String {
    "fr".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    steps: Vec<Spanned<RawStep>>,
    #[serde(default)]
    category: Category,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum RawStep {
    Ring(u32),
    Play(RawPlay),
    Hangup(Empty),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `play = "acme/welcome.wav"` or `play = { sound = "acme/welcome.wav", times = 2 }`.
struct RawPlay {
    sound: String,
    times: u32,
}

impl<'de> Deserialize<'de> for RawPlay {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            sound: String,
            #[serde(default = "one")]
            times: u32,
        }
        fn one() -> u32 {
            1
        }
        struct PlayVisitor;
        impl<'de> Visitor<'de> for PlayVisitor {
            type Value = RawPlay;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sound path such as \"acme/welcome.wav\", or { sound = \"acme/welcome.wav\", times = 2 }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPlay, E> {
                Ok(RawPlay {
                    sound: v.to_string(),
                    times: 1,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawPlay, A::Error> {
                let t = Table::deserialize(MapAccessDeserializer::new(map))?;
                Ok(RawPlay {
                    sound: t.sound,
                    times: t.times,
                })
            }
        }
        d.deserialize_any(PlayVisitor)
    }
}

/// Turns byte offsets into line and column for one file.
struct Locator<'a> {
    file: &'a Path,
    source: &'a str,
}

impl Locator<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> PlanError {
        let start = span.start.min(self.source.len());
        let before = &self.source[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        PlanError {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Loads every `*.toml` in `dir` (sorted by name) and checks that each sound a plan plays
/// exists under `sounds`. Returns every error found, not just the first.
pub fn load_dir(dir: &Path, sounds: &Path) -> Result<Plans, Vec<PlanError>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) => {
            return Err(vec![PlanError {
                file: dir.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("cannot read the dial plan directory: {e}"),
            }]);
        }
    };
    files.sort();
    let mut errors = Vec::new();
    let mut companies: Vec<(Company, HashMap<E164, PlanError>)> = Vec::new();
    for file in &files {
        match std::fs::read_to_string(file) {
            Ok(source) => match load_one(file, &source, sounds) {
                Ok(loaded) => companies.push(loaded),
                Err(mut e) => errors.append(&mut e),
            },
            Err(e) => errors.push(PlanError {
                file: file.clone(),
                line: 0,
                column: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if files.is_empty() {
        errors.push(PlanError {
            file: dir.to_path_buf(),
            line: 0,
            column: 0,
            message:
                "no dial plan (*.toml) in this directory; expected one file per client company"
                    .into(),
        });
    }

    // Across files: ids and numbers (also in national form) must each belong to one company.
    let mut ids: HashMap<&CompanyId, &Path> = HashMap::new();
    let mut numbers: HashMap<String, (&Company, &PlanError)> = HashMap::new();
    for (company, spans) in &companies {
        if let Some(other) = ids.insert(&company.id, &company.file) {
            errors.push(PlanError {
                message: format!(
                    "company id `{}` is also used by {}; expected one id per company",
                    company.id,
                    other.display()
                ),
                ..spans.values().next().cloned().unwrap_or(PlanError {
                    file: company.file.clone(),
                    line: 1,
                    column: 1,
                    message: String::new(),
                })
            });
        }
        for number in &company.numbers {
            let keys =
                std::iter::once(number.to_string()).chain(company.country.national_form(number));
            let Some(here) = spans.get(number) else {
                continue;
            };
            for key in keys {
                if let Some((other, there)) = numbers.get(&key) {
                    if std::ptr::eq(*other, company) {
                        continue;
                    }
                    errors.push(PlanError {
                        message: format!(
                            "number {key} is claimed by company `{}` ({}:{}:{}) and by company `{}`; expected each number in one plan only",
                            other.id,
                            there.file.display(),
                            there.line,
                            there.column,
                            company.id
                        ),
                        ..here.clone()
                    });
                    break;
                }
                numbers.insert(key, (company, here));
            }
        }
    }
    if errors.is_empty() {
        Ok(Plans::new(companies.into_iter().map(|(c, _)| c).collect()))
    } else {
        Err(errors)
    }
}

/// Parses and checks one file. The map gives each number's location, for cross-file errors.
fn load_one(
    file: &Path,
    source: &str,
    sounds: &Path,
) -> Result<(Company, HashMap<E164, PlanError>), Vec<PlanError>> {
    let at = Locator { file, source };
    let raw: RawPlan = toml::from_str(source).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        vec![at.error(span, e.message().trim().replace('\n', " "))]
    })?;
    let mut errors = Vec::new();
    let c = raw.company;

    let id = c.id.get_ref();
    if id.is_empty()
        || !id
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_')
    {
        errors.push(at.error(
            c.id.span(),
            format!("invalid company id `{id}`; expected lower-case letters, digits, `-` or `_`"),
        ));
    }
    let country = Country::from_code(c.country.get_ref());
    if country.is_none() {
        errors.push(at.error(
            c.country.span(),
            format!(
                "unknown country `{}`; expected one of {}",
                c.country.get_ref(),
                Country::known_codes()
            ),
        ));
    }
    if jiff::tz::TimeZone::get(c.timezone.get_ref()).is_err() {
        errors.push(at.error(
            c.timezone.span(),
            format!(
                "unknown time zone `{}`; expected an IANA name such as \"Europe/Paris\"",
                c.timezone.get_ref()
            ),
        ));
    }
    let mut numbers = Vec::new();
    let mut spans = HashMap::new();
    if c.numbers.get_ref().is_empty() {
        errors.push(at.error(
            c.numbers.span(),
            "no number; expected at least one E.164 number such as \"+33180000001\"",
        ));
    }
    for n in c.numbers.get_ref() {
        match E164::parse(n.get_ref()) {
            Some(number) => {
                if spans
                    .insert(number.clone(), at.error(n.span(), ""))
                    .is_some()
                {
                    errors.push(at.error(n.span(), format!("number {number} is listed twice")));
                }
                numbers.push(number);
            }
            None => errors.push(at.error(
                n.span(),
                format!(
                    "`{}` is not an international number; expected E.164 such as \"+33180000001\"",
                    n.get_ref()
                ),
            )),
        }
    }

    let mut routes = Vec::new();
    if raw.routes.is_empty() {
        errors.push(at.error(0..0, "no [[route]]; expected at least one route with steps"));
    }
    for route in raw.routes {
        let span = route.span();
        let route = route.into_inner();
        if route.steps.is_empty() {
            errors.push(at.error(
                span.clone(),
                format!("route `{}` has no steps; expected at least one", route.name),
            ));
        }
        let mut steps = Vec::new();
        for step in route.steps {
            let span = step.span();
            match step.into_inner() {
                RawStep::Ring(seconds) if seconds > MAX_RING_SECONDS => errors.push(at.error(
                    span,
                    format!(
                        "ring for {seconds} s is too long; expected at most {MAX_RING_SECONDS} s"
                    ),
                )),
                RawStep::Ring(seconds) => steps.push(Step::Ring { seconds }),
                RawStep::Play(play) => {
                    let path = Path::new(&play.sound);
                    if path.is_absolute()
                        || path
                            .components()
                            .any(|c| matches!(c, std::path::Component::ParentDir))
                    {
                        errors.push(at.error(
                            span,
                            format!(
                                "sound `{}` must be a path inside the sounds directory",
                                play.sound
                            ),
                        ));
                    } else if !sounds.join(path).is_file() {
                        errors.push(at.error(
                            span,
                            format!(
                                "sound `{}` not found; expected a WAV file at {}",
                                play.sound,
                                sounds.join(path).display()
                            ),
                        ));
                    } else if !(1..=100).contains(&play.times) {
                        errors.push(
                            at.error(span, format!("times = {}; expected 1 to 100", play.times)),
                        );
                    } else {
                        steps.push(Step::Play {
                            sound: SoundName(play.sound),
                            times: play.times,
                        });
                    }
                }
                RawStep::Hangup(Empty {}) => steps.push(Step::Hangup),
            }
        }
        routes.push(Route {
            name: route.name,
            steps,
            category: route.category,
        });
    }

    match (errors.is_empty(), country) {
        (true, Some(country)) => Ok((
            Company {
                id: CompanyId(c.id.into_inner()),
                answer_as: c.answer_as.unwrap_or_else(|| c.name.clone()),
                name: c.name,
                numbers,
                country,
                timezone: c.timezone.into_inner(),
                language: c.language,
                routes,
                file: file.to_path_buf(),
            },
            spans,
        )),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::Dialled;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn fixture() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::TempDir::new().unwrap();
        let sounds = dir.path().join("sounds");
        std::fs::create_dir_all(sounds.join("a")).unwrap();
        std::fs::write(sounds.join("a/hello.wav"), b"RIFF").unwrap();
        std::fs::create_dir_all(dir.path().join("plans")).unwrap();
        (dir, sounds)
    }

    const GOOD: &str = r#"
[company]
id = "acme"
name = "ACME"
numbers = ["+33180000001"]

[[route]]
name = "all"
steps = [{ ring = 2 }, { play = "a/hello.wav" }, { play = { sound = "a/hello.wav", times = 2 } }, { hangup = {} }]
"#;

    #[test]
    fn loads_a_plan_and_finds_it_by_any_number_form() {
        let (dir, sounds) = fixture();
        write(&dir.path().join("plans"), "acme.toml", GOOD);
        let plans = load_dir(&dir.path().join("plans"), &sounds).unwrap();
        let c = plans
            .lookup(&Dialled::parse("0180000001").unwrap())
            .unwrap();
        assert_eq!(c.id.0, "acme");
        assert!(
            plans
                .lookup(&Dialled::parse("+33180000001").unwrap())
                .is_some()
        );
        assert!(
            plans
                .lookup(&Dialled::parse("+33180000002").unwrap())
                .is_none()
        );
        assert_eq!(c.route().unwrap().steps.len(), 4);
        assert_eq!(
            c.route().unwrap().steps[2],
            Step::Play {
                sound: SoundName("a/hello.wav".into()),
                times: 2
            }
        );
    }

    #[test]
    fn errors_carry_file_line_column_and_expectation() {
        let (dir, sounds) = fixture();
        let plans = dir.path().join("plans");
        write(
            &plans,
            "acme.toml",
            &GOOD.replace("a/hello.wav\" }, { play", "a/missing.wav\" }, { play"),
        );
        let errors = load_dir(&plans, &sounds).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let text = errors[0].to_string();
        assert!(text.contains("acme.toml:9:"), "{text}");
        assert!(text.contains("sound `a/missing.wav` not found"), "{text}");

        write(
            &plans,
            "acme.toml",
            &GOOD.replace("name = \"ACME\"", "name = \"ACME\"\ncolour = \"red\""),
        );
        let text = load_dir(&plans, &sounds).unwrap_err()[0].to_string();
        assert!(
            text.contains("acme.toml:5:1: unknown field `colour`, expected one of"),
            "{text}"
        );
    }

    #[test]
    fn a_number_claimed_twice_names_both_files() {
        let (dir, sounds) = fixture();
        let plans = dir.path().join("plans");
        write(&plans, "acme.toml", GOOD);
        write(
            &plans,
            "other.toml",
            &GOOD
                .replace("\"acme\"", "\"other\"")
                .replace("+33180000001", "0033 1 80 00 00 01"),
        );
        let text = load_dir(&plans, &sounds).unwrap_err()[0].to_string();
        assert!(
            text.starts_with(&format!("{}:5:", plans.join("other.toml").display())),
            "{text}"
        );
        assert!(
            text.contains(&format!("{}:5:", plans.join("acme.toml").display())),
            "{text}"
        );
    }
}
