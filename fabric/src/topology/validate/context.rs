//! What the validation sections share.

use std::collections::{HashMap, HashSet};

use super::super::error::{ErrorKind as K, TopologyError as E};
use super::super::params::FabricParams;
use super::super::raw::RawTopology;
use super::super::{AddressLimits, Attach, HostBridge, Switch};
use super::values::quoted;
use super::R;

pub(super) struct Context<'a> {
    pub raw: &'a RawTopology,
    pub limits: AddressLimits,
    /// `[fabric]`: defaults for every element.
    pub fabric: FabricParams,
    ids: HashSet<String>,
    pub host_bridges: Vec<HostBridge>,
    /// Switches; their `attach` is set once every port is resolved.
    pub switches: Vec<Switch>,
    /// Where each type-3 device and accelerator plugs in (by raw index).
    pub type3_attach: Vec<Attach>,
    pub accelerator_attach: Vec<Attach>,
}

impl<'a> Context<'a> {
    pub fn new(raw: &'a RawTopology, limits: AddressLimits, fabric: FabricParams) -> Self {
        Context {
            raw,
            limits,
            fabric,
            ids: HashSet::new(),
            host_bridges: Vec::new(),
            switches: Vec::new(),
            type3_attach: Vec::new(),
            accelerator_attach: Vec::new(),
        }
    }

    /// Records an element id (`key` names it in errors): well formed and
    /// unique across all element kinds.
    pub fn add_id(&mut self, key: &str, id: &str) -> R<()> {
        if !valid_id(id) {
            return Err(E::new(key, quoted(id), K::BadId));
        }
        if super::cpu_cache::RESERVED_IDS.contains(&id) {
            return Err(E::new(key, quoted(id), K::ReservedId(id.into())));
        }
        if !self.ids.insert(id.to_string()) {
            return Err(E::new(key, quoted(id), K::DuplicateId));
        }
        Ok(())
    }

    /// Ids of switches, type-3 devices and accelerators, checked before
    /// any of their fields so a duplicate is reported as such.
    pub fn register_other_ids(&mut self) -> R<()> {
        let raw = self.raw;
        for (i, s) in raw.switches.iter().enumerate() {
            self.add_id(&format!("switch[{i}].id"), &s.id)?;
        }
        for (i, d) in raw.type3.iter().enumerate() {
            self.add_id(&format!("type3[{i}].id"), &d.id)?;
        }
        for (i, a) in raw.accelerators.iter().enumerate() {
            self.add_id(&format!("accelerator[{i}].id"), &a.id)?;
        }
        Ok(())
    }

    /// Host bridge index by id.
    pub fn host_bridge_index(&self) -> HashMap<&str, usize> {
        index_of(self.host_bridges.iter().map(|h| h.id.as_str()))
    }

    /// Switch index by id.
    pub fn switch_index(&self) -> HashMap<&str, usize> {
        index_of(self.raw.switches.iter().map(|s| s.id.as_str()))
    }
}

fn index_of<'s>(ids: impl Iterator<Item = &'s str>) -> HashMap<&'s str, usize> {
    ids.enumerate().map(|(i, id)| (id, i)).collect()
}

pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
