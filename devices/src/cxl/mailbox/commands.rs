//! Mailbox command set: opcodes, return codes, the Command Effects Log and
//! the dispatcher (CXL 3.1 §8.2.9).
//!
//! [`MailboxCommand::ALL`] is the single list of implemented commands: the
//! CEL is generated from it and [`execute`] answers Unsupported for every
//! opcode [`MailboxCommand::from_opcode`] does not know, so the CEL and the
//! dispatcher cannot disagree.

use super::memdev::MemoryDevice;
use super::payload::{array_at, u32_at, Out};
use super::MAILBOX_PAYLOAD_SIZE;

/// Mailbox return codes (CXL 3.1 Table 8-34), as written to the Mailbox
/// Status register bits [47:32].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ReturnCode {
    Success = 0x00,
    BackgroundStarted = 0x01,
    InvalidInput = 0x02,
    Unsupported = 0x03,
    InternalError = 0x04,
    RetryRequired = 0x05,
    Busy = 0x06,
    MediaDisabled = 0x07,
    FwTransferInProgress = 0x08,
    FwTransferOutOfOrder = 0x09,
    FwVerificationFailed = 0x0a,
    InvalidSlot = 0x0b,
    ActivationFailedRolledBack = 0x0c,
    ActivationFailedResetRequired = 0x0d,
    InvalidHandle = 0x0e,
    InvalidPhysicalAddress = 0x0f,
    InjectPoisonLimitReached = 0x10,
    PermanentMediaFailure = 0x11,
    Aborted = 0x12,
    InvalidSecurityState = 0x13,
    IncorrectPassphrase = 0x14,
    UnsupportedMailbox = 0x15,
    InvalidPayloadLength = 0x16,
    InvalidLog = 0x17,
}

impl ReturnCode {
    pub fn code(self) -> u16 {
        self as u16
    }
}

/// Command effect bits reported in the CEL (CXL 3.1 Table 8-75).
pub mod effects {
    pub const CONFIG_CHANGE_COLD_RESET: u16 = 1 << 0;
    pub const IMMEDIATE_CONFIG_CHANGE: u16 = 1 << 1;
    pub const IMMEDIATE_DATA_CHANGE: u16 = 1 << 2;
    pub const IMMEDIATE_POLICY_CHANGE: u16 = 1 << 3;
    pub const IMMEDIATE_LOG_CHANGE: u16 = 1 << 4;
    pub const SECURITY_STATE_CHANGE: u16 = 1 << 5;
    pub const BACKGROUND_OPERATION: u16 = 1 << 6;
}

/// UUID of the Command Effects Log, in the byte order it travels in payloads
/// (CXL 3.1 §8.2.9.5.2.1: 0da9c0b5-bf41-4b78-8f79-96b1623b3f17).
pub const CEL_UUID: [u8; 16] = [
    0x0d, 0xa9, 0xc0, 0xb5, 0xbf, 0x41, 0x4b, 0x78, 0x8f, 0x79, 0x96, 0xb1, 0x62, 0x3b, 0x3f, 0x17,
];

/// Every command this device implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum MailboxCommand {
    GetEventRecords = 0x0100,
    ClearEventRecords = 0x0101,
    GetEventInterruptPolicy = 0x0102,
    SetEventInterruptPolicy = 0x0103,
    GetFwInfo = 0x0200,
    GetTimestamp = 0x0300,
    SetTimestamp = 0x0301,
    GetSupportedLogs = 0x0400,
    GetLog = 0x0401,
    Identify = 0x4000,
    GetPartitionInfo = 0x4100,
    SetPartitionInfo = 0x4101,
    GetLsa = 0x4102,
    SetLsa = 0x4103,
    GetHealthInfo = 0x4200,
    GetPoisonList = 0x4300,
    InjectPoison = 0x4301,
    ClearPoison = 0x4302,
}

/// What input payload length a command accepts; anything else is answered
/// with Invalid Payload Length before the handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InputLength {
    Exact(usize),
    /// Either length (Set Event Interrupt Policy has an optional DCD byte;
    /// Set Partition Info is 9 bytes in the spec and 0x0a in Linux's table).
    Either(usize, usize),
    /// Variable-sized payload with a fixed header; the handler checks the rest.
    AtLeast(usize),
}

impl InputLength {
    fn accepts(self, len: usize) -> bool {
        match self {
            InputLength::Exact(n) => len == n,
            InputLength::Either(a, b) => len == a || len == b,
            InputLength::AtLeast(n) => len >= n,
        }
    }
}

impl MailboxCommand {
    /// In opcode order, which is also the CEL order.
    pub const ALL: [MailboxCommand; 18] = [
        MailboxCommand::GetEventRecords,
        MailboxCommand::ClearEventRecords,
        MailboxCommand::GetEventInterruptPolicy,
        MailboxCommand::SetEventInterruptPolicy,
        MailboxCommand::GetFwInfo,
        MailboxCommand::GetTimestamp,
        MailboxCommand::SetTimestamp,
        MailboxCommand::GetSupportedLogs,
        MailboxCommand::GetLog,
        MailboxCommand::Identify,
        MailboxCommand::GetPartitionInfo,
        MailboxCommand::SetPartitionInfo,
        MailboxCommand::GetLsa,
        MailboxCommand::SetLsa,
        MailboxCommand::GetHealthInfo,
        MailboxCommand::GetPoisonList,
        MailboxCommand::InjectPoison,
        MailboxCommand::ClearPoison,
    ];

    pub fn opcode(self) -> u16 {
        self as u16
    }

    pub fn from_opcode(opcode: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.opcode() == opcode)
    }

    /// The CEL effects field for this command.
    pub fn effects(self) -> u16 {
        use effects::*;
        use MailboxCommand::*;
        match self {
            ClearEventRecords => IMMEDIATE_LOG_CHANGE,
            SetEventInterruptPolicy => IMMEDIATE_CONFIG_CHANGE,
            SetTimestamp => IMMEDIATE_POLICY_CHANGE,
            // A new split applies at the next cold reset, or at once when the
            // host sets the Immediate flag.
            SetPartitionInfo => {
                CONFIG_CHANGE_COLD_RESET | IMMEDIATE_CONFIG_CHANGE | IMMEDIATE_DATA_CHANGE
            }
            SetLsa => IMMEDIATE_CONFIG_CHANGE | IMMEDIATE_DATA_CHANGE,
            // Poisoned lines read back as poison; clearing writes new data.
            // Inject also appends a General Media event.
            InjectPoison => IMMEDIATE_DATA_CHANGE | IMMEDIATE_LOG_CHANGE,
            ClearPoison => IMMEDIATE_DATA_CHANGE,
            GetEventRecords
            | GetEventInterruptPolicy
            | GetFwInfo
            | GetTimestamp
            | GetSupportedLogs
            | GetLog
            | Identify
            | GetPartitionInfo
            | GetLsa
            | GetHealthInfo
            | GetPoisonList => 0,
        }
    }

    pub(crate) fn input_length(self) -> InputLength {
        use InputLength::*;
        use MailboxCommand::*;
        match self {
            GetEventRecords => Exact(1),
            ClearEventRecords => AtLeast(6),
            SetEventInterruptPolicy => Either(4, 5),
            SetTimestamp => Exact(8),
            GetLog => Exact(0x18),
            SetPartitionInfo => Either(9, 10),
            GetLsa => Exact(8),
            SetLsa => AtLeast(8),
            GetPoisonList => Exact(0x10),
            InjectPoison => Exact(8),
            ClearPoison => Exact(0x48),
            GetEventInterruptPolicy
            | GetFwInfo
            | GetTimestamp
            | GetSupportedLogs
            | Identify
            | GetPartitionInfo
            | GetHealthInfo => Exact(0),
        }
    }
}

/// Size of the CEL in bytes: one {opcode, effects} entry per command.
pub(crate) const CEL_SIZE: usize = MailboxCommand::ALL.len() * 4;

/// The Command Effects Log as returned by GET_LOG.
pub(crate) fn command_effects_log() -> Vec<u8> {
    let mut out = Out::with_capacity(CEL_SIZE);
    for cmd in MailboxCommand::ALL {
        out.u16(cmd.opcode()).u16(cmd.effects());
    }
    out.into_vec()
}

/// Runs one mailbox command. `Ok` carries the output payload (return code
/// Success); `Err` carries the failure return code and no output.
pub(crate) fn execute(
    dev: &mut MemoryDevice,
    opcode: u16,
    input: &[u8],
) -> Result<Vec<u8>, ReturnCode> {
    let Some(cmd) = MailboxCommand::from_opcode(opcode) else {
        log::debug!("cxl mailbox: unsupported opcode {opcode:#06x}");
        return Err(ReturnCode::Unsupported);
    };
    if !cmd.input_length().accepts(input.len()) {
        return Err(ReturnCode::InvalidPayloadLength);
    }
    use MailboxCommand::*;
    let out = match cmd {
        GetEventRecords => dev.events.get_records(input),
        ClearEventRecords => dev.events.clear_records(input),
        GetEventInterruptPolicy => Ok(dev.events.interrupt_policy()),
        SetEventInterruptPolicy => dev.events.set_interrupt_policy(input),
        GetFwInfo => Ok(dev.fw_info()),
        GetTimestamp => Ok(dev.get_timestamp()),
        SetTimestamp => dev.set_timestamp(input),
        GetSupportedLogs => Ok(supported_logs()),
        GetLog => get_log(input),
        Identify => Ok(dev.identify()),
        GetPartitionInfo => Ok(dev.partition_info()),
        SetPartitionInfo => dev.set_partition_info(input),
        GetLsa => dev.get_lsa(input),
        SetLsa => dev.set_lsa(input),
        GetHealthInfo => Ok(dev.health_info()),
        GetPoisonList => dev.get_poison_list(input),
        InjectPoison => dev.inject_poison(input),
        ClearPoison => dev.clear_poison(input),
    }?;
    // Handlers size their output to the payload area; a bug there must not
    // reach the guest as a truncated payload.
    if out.len() > MAILBOX_PAYLOAD_SIZE {
        log::error!(
            "cxl mailbox: {cmd:?} produced {} bytes of output",
            out.len()
        );
        return Err(ReturnCode::InternalError);
    }
    Ok(out)
}

/// GET_SUPPORTED_LOGS (0400h): one log, the CEL.
fn supported_logs() -> Vec<u8> {
    let mut out = Out::with_capacity(0x1c);
    out.u16(1).zeros(6).bytes(&CEL_UUID).u32(CEL_SIZE as u32);
    out.into_vec()
}

/// GET_LOG (0401h): input {uuid[16], offset u32, length u32}.
fn get_log(input: &[u8]) -> Result<Vec<u8>, ReturnCode> {
    let uuid: [u8; 16] = array_at(input, 0).ok_or(ReturnCode::InvalidPayloadLength)?;
    let offset = u32_at(input, 0x10).ok_or(ReturnCode::InvalidPayloadLength)? as usize;
    let length = u32_at(input, 0x14).ok_or(ReturnCode::InvalidPayloadLength)? as usize;
    if uuid != CEL_UUID {
        return Err(ReturnCode::InvalidLog);
    }
    // "The device shall return Invalid Input if the Offset or Length fields
    // attempt to access beyond the size of the log" (§8.2.9.5.2).
    let end = offset.checked_add(length).ok_or(ReturnCode::InvalidInput)?;
    if end > CEL_SIZE || length > MAILBOX_PAYLOAD_SIZE {
        return Err(ReturnCode::InvalidInput);
    }
    command_effects_log()
        .get(offset..end)
        .map(<[u8]>::to_vec)
        .ok_or(ReturnCode::InvalidInput)
}
