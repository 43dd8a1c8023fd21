"""The ingest rule catalogue: every reason ingestion gives a file, as data, in one place.

A file that is refused, skipped or replaced before or while it is read (`transforms/ingest/`) is
recorded with one of these rule ids beside its English reason: the place that refuses it names the
rule (`SubmissionRejected(reason, rule=...)`, `LandedFileRefused`, a landing `Refusal`), the
manifest keeps it (`ops.manifest.reason_rule_id`), and feedback, the status mart and the portal read
it from there. The reason's own words give the details (line, field, size); the messages below say
what the rule means and what the office should do, in English and Vietnamese.

The contract's own rules (`ENR.*`, `PLC.*`, `REF.*`: row, file, load and reference rules) live in
`RULES` of `transforms/contract/suites.py`, beside the Great Expectations suites that check them.
`message()` answers for both, so a reader of the warehouse needs one lookup for any rule id.
docs/CONTRACT_RULES.md lists every rule of both (tests/test_expectations.py checks it).
"""
from __future__ import annotations

from dataclasses import dataclass

ERROR, WARNING, INFO = "error", "warning", "info"


@dataclass(frozen=True)
class IngestRule:
    rule_id: str
    severity: str  # error: the file was not loaded; warning: loaded, to be checked; info: nothing to fix
    message_en: str
    message_vi: str
    # False: the file is not the office's attempt at its submission (a lock file, a read that failed
    # on our side, a copy of a file already received), so feedback looks past it to the file before.
    attempt: bool = True


def _r(rule_id, severity, en, vi, attempt=True) -> IngestRule:
    return IngestRule(rule_id, severity, en, vi, attempt)


INGEST_RULES: dict[str, IngestRule] = {r.rule_id: r for r in (
    # --- the landing zone: where the file is and what it is (transforms/ingest/landing.py) ---
    _r("ING.file.link", ERROR, "The upload is a link or a special file, not a file; it was not read.",
       "Tệp tải lên là liên kết hoặc tệp đặc biệt, không phải tệp dữ liệu; hệ thống không đọc."),
    _r("ING.file.hidden", ERROR, "A temporary or hidden file, not a submission.",
       "Tệp tạm hoặc tệp ẩn, không phải tệp nộp.", attempt=False),
    _r("ING.file.name", ERROR, "The file name is not allowed; rename the file and send it again.",
       "Tên tệp không hợp lệ; hãy đổi tên tệp và gửi lại."),
    _r("ING.file.term_future", ERROR,
       "The file is in the folder of a term that has not begun yet; it was not read. Put it in the folder of the term "
       "it describes.",
       "Tệp nằm trong thư mục của một học kỳ chưa bắt đầu nên không được đọc. Hãy đặt tệp vào thư mục của học kỳ mà "
       "tệp mô tả."),
    _r("ING.file.term_range", ERROR, "The file is in the folder of a term the collection does not take; it was not read.",
       "Tệp nằm trong thư mục của một học kỳ ngoài phạm vi thu thập nên không được đọc."),
    _r("ING.file.location", ERROR, "The file is not in the folder of a university and term.",
       "Tệp không nằm trong thư mục của một trường và học kỳ."),
    _r("ING.file.unavailable", ERROR, "The file could not be read when it was processed; it will be read again.",
       "Không đọc được tệp khi xử lý; hệ thống sẽ đọc lại.", attempt=False),
    # --- reading the file (transforms/ingest/readers.py and the readers it dispatches to) ---
    _r("ING.file.size", ERROR, "The file is too large; split it and send the parts.",
       "Tệp quá lớn; hãy tách tệp và gửi từng phần."),
    _r("ING.file.unsafe", ERROR, "The workbook contains unsafe XML and was not read.",
       "Tệp Excel chứa XML không an toàn nên không được đọc."),
    _r("ING.file.encoding", ERROR,
       "The text encoding of the file could not be determined; export it as CSV UTF-8.",
       "Không xác định được bảng mã của tệp; hãy xuất lại dưới dạng CSV UTF-8."),
    _r("ING.file.type", ERROR,
       "This kind of file is not accepted; send CSV (UTF-8), Excel (.xlsx, .xlsm, .xlsb, .xls) or OpenDocument (.ods).",
       "Loại tệp này không được chấp nhận; hãy gửi CSV (UTF-8), Excel (.xlsx, .xlsm, .xlsb, .xls) hoặc OpenDocument "
       "(.ods)."),
    _r("ING.file.sheet", ERROR, "The workbook has no sheet to read.", "Tệp Excel không có trang tính cần đọc."),
    _r("ING.file.header", ERROR, "No header row with the expected column names was found.",
       "Không tìm thấy dòng tiêu đề với tên cột như quy định."),
    _r("ING.file.columns", ERROR, "Required columns are missing.", "Thiếu cột bắt buộc."),
    _r("ING.file.records", ERROR,
       "The rows of the file cannot all be told apart (a quote never closed, a row number written twice, or fewer "
       "rows read than the file holds), so no row of it was loaded; fix the line the reason names and send the file "
       "again.",
       "Không tách được đầy đủ các dòng của tệp (dấu ngoặc kép không được đóng, số dòng bị ghi hai lần, hoặc số dòng "
       "đọc được ít hơn số dòng trong tệp) nên không dòng nào được nạp; hãy sửa dòng được nêu rồi gửi lại tệp."),
    _r("ING.file.damaged", ERROR, "The file is damaged or not in the stated format.",
       "Tệp bị hỏng hoặc không đúng định dạng."),
    _r("ING.file.internal", ERROR,
       "The file could not be read because of an error in lab2fab itself; the data team has been told and will read "
       "it again once it is fixed. No action is needed from the office.",
       "Không đọc được tệp do lỗi của chính hệ thống lab2fab; nhóm dữ liệu đã được báo và sẽ đọc lại tệp sau khi sửa "
       "lỗi. Nhà trường không cần làm gì.", attempt=False),
    # --- the load (transforms/ingest/stage.py) ---
    _r("ING.file.duplicate", INFO, "The same file (same content) was already received; this copy was skipped.",
       "Tệp này (cùng nội dung) đã được nhận trước đó; bản sao này được bỏ qua.", attempt=False),
    _r("ING.file.all_quarantined", ERROR, "Every row of the file was quarantined; nothing was loaded.",
       "Tất cả các dòng của tệp đều bị cách ly; không dòng nào được nạp."),
    _r("ING.file.superseded", INFO, "A newer file for the same term replaced this one.",
       "Một tệp mới hơn cho cùng học kỳ đã thay thế tệp này."),
    _r("ING.file.rejected", ERROR,
       "The file was rejected by the contract's file rules (each is listed with its own message).",
       "Tệp bị từ chối theo các quy tắc cấp tệp của hợp đồng dữ liệu (mỗi quy tắc được liệt kê kèm thông báo riêng)."),
    _r("ING.file.extra_columns", INFO, "Columns with names the system does not know were kept aside, not loaded.",
       "Các cột có tên không thuộc danh mục được để riêng, không nạp."),
    # File-level warnings on a loaded file, in ops.validation_results beside the contract's own.
    _r("ING.file.matches_other_university", WARNING,
       "This file is byte for byte the same as a file another university sent. It was taken as your own "
       "submission; check that it holds your university's students and send your own file if not.",
       "Tệp này giống hệt từng byte với một tệp do trường khác gửi. Tệp được nhận là bài nộp của trường bạn; "
       "hãy kiểm tra tệp có đúng sinh viên của trường bạn không, nếu không hãy gửi tệp của trường."),
    _r("ING.file.matches_other_period", WARNING,
       "This file is byte for byte the same as a file your university sent for another term. It was taken "
       "for this term; check that it is this term's data.",
       "Tệp này giống hệt từng byte với tệp trường bạn đã gửi cho một học kỳ khác. Tệp được nhận cho học kỳ "
       "này; hãy kiểm tra đó có đúng là dữ liệu của học kỳ này không."),
)}


def ingest_rule(rule_id: str) -> IngestRule:
    """The catalogue entry of an ingest rule id; an id not in the catalogue is a defect, named."""
    try:
        return INGEST_RULES[rule_id]
    except KeyError:
        raise ValueError(f"{rule_id!r} is not an ingest rule of transforms/contract/rules.py "
                         f"(known: {', '.join(sorted(INGEST_RULES))})") from None


def check_rule(rule_id: str) -> str:
    """`rule_id` if the catalogue has it; raised where a file is refused, so a typo fails at once."""
    ingest_rule(rule_id)
    return rule_id


def message(rule_id: str) -> tuple[str, str, str | None] | None:
    """(message_en, message_vi, field) of any rule id, ingest or contract; None for an unknown id."""
    if rule_id in INGEST_RULES:
        r = INGEST_RULES[rule_id]
        return r.message_en, r.message_vi, None
    try:
        from transforms.contract.suites import RULES
    except Exception:  # GX not importable here: rule ids still identify the reasons
        return None
    r = RULES.get(rule_id)
    return (r.message_en, r.message_vi, r.column) if r else None
