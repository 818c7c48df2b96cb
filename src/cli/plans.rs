//! The dial plans as the CLI's commands read them: loaded, or one line saying they do not
//! (`permanence check` is the command that lists their mistakes).

use permanence::config::Config;
use permanence::dialplan::Plans;

/// The plans in force under `config`, or how many mistakes keep them from loading.
pub fn load(config: &Config) -> anyhow::Result<Plans> {
    permanence::dialplan::load_dir(&config.paths.dialplans, &config.paths.sounds).map_err(
        |errors| {
            anyhow::anyhow!(
                "the dial plans do not load ({} errors; `permanence check` lists them)",
                errors.len()
            )
        },
    )
}
