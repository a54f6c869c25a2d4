//! Helper function ids (`enum bpf_func_id` in `include/uapi/linux/bpf.h`) for
//! the helpers bpfnexus emits or the userspace VM implements, with their names
//! and argument counts.

macro_rules! helpers {
    ($( $variant:ident = $id:literal, $name:literal, $args:literal; )*) => {
        /// A kernel helper function, numbered as the kernel numbers it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(i32)]
        pub enum Helper {
            $( $variant = $id, )*
        }

        impl Helper {
            /// Every helper this crate knows, in id order.
            pub const ALL: &'static [Helper] = &[$(Helper::$variant,)*];

            /// The kernel's name, without the `bpf_` prefix.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self { $( Helper::$variant => $name, )* }
            }

            /// How many of r1..r5 the helper reads.
            #[must_use]
            pub const fn arg_count(self) -> u8 {
                match self { $( Helper::$variant => $args, )* }
            }

            #[must_use]
            pub const fn from_id(id: i32) -> Option<Helper> {
                match id { $( $id => Some(Helper::$variant), )* _ => None }
            }
        }
    };
}

helpers! {
    MapLookupElem = 1, "map_lookup_elem", 2;
    MapUpdateElem = 2, "map_update_elem", 4;
    MapDeleteElem = 3, "map_delete_elem", 2;
    ProbeRead = 4, "probe_read", 3;
    KtimeGetNs = 5, "ktime_get_ns", 0;
    TracePrintk = 6, "trace_printk", 5;
    GetPrandomU32 = 7, "get_prandom_u32", 0;
    GetSmpProcessorId = 8, "get_smp_processor_id", 0;
    TailCall = 12, "tail_call", 3;
    GetCurrentPidTgid = 14, "get_current_pid_tgid", 0;
    GetCurrentUidGid = 15, "get_current_uid_gid", 0;
    GetCurrentComm = 16, "get_current_comm", 2;
    PerfEventOutput = 25, "perf_event_output", 5;
    GetStackid = 27, "get_stackid", 3;
    GetCurrentTask = 35, "get_current_task", 0;
    ProbeReadStr = 45, "probe_read_str", 3;
    GetStack = 67, "get_stack", 4;
    GetCurrentCgroupId = 80, "get_current_cgroup_id", 0;
    MapPushElem = 87, "map_push_elem", 3;
    MapPopElem = 88, "map_pop_elem", 2;
    MapPeekElem = 89, "map_peek_elem", 2;
    SendSignal = 109, "send_signal", 1;
    ProbeReadUser = 112, "probe_read_user", 3;
    ProbeReadKernel = 113, "probe_read_kernel", 3;
    ProbeReadUserStr = 114, "probe_read_user_str", 3;
    ProbeReadKernelStr = 115, "probe_read_kernel_str", 3;
    Jiffies64 = 118, "jiffies64", 0;
    KtimeGetBootNs = 125, "ktime_get_boot_ns", 0;
    RingbufOutput = 130, "ringbuf_output", 4;
    RingbufReserve = 131, "ringbuf_reserve", 3;
    RingbufSubmit = 132, "ringbuf_submit", 2;
    RingbufDiscard = 133, "ringbuf_discard", 2;
    RingbufQuery = 134, "ringbuf_query", 2;
    GetCurrentTaskBtf = 158, "get_current_task_btf", 0;
    GetFuncIp = 173, "get_func_ip", 1;
    GetAttachCookie = 174, "get_attach_cookie", 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_sorted() {
        let mut prev = 0;
        for &h in Helper::ALL {
            assert_eq!(Helper::from_id(h as i32), Some(h));
            assert!(h as i32 > prev, "{} out of order", h.name());
            prev = h as i32;
        }
        assert_eq!(Helper::from_id(9999), None);
        assert_eq!(Helper::RingbufReserve.name(), "ringbuf_reserve");
    }
}
