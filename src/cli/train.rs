//! `elbo train`: the options are `elbo::train::TrainOptions` itself.

use anyhow::Result;
use clap::parser::ValueSource;
use clap::ArgMatches;

pub fn train(matches: &ArgMatches, mut opts: elbo::train::TrainOptions) -> Result<()> {
    // which options the user gave: a resumed run applies those it can change
    if let Some((_, m)) = matches.subcommand() {
        opts.given = m
            .ids()
            .filter(|id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine))
            .map(|id| id.to_string())
            .collect();
    }
    elbo::train::train(&opts)?;
    Ok(())
}
