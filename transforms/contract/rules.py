"""The rule catalogue: every rule lab2fab applies to a submission, as data, in one place: the
contract's rules (`RULES`: `ENR.*`, `PLC.*`, `REF.*`, checked by the Great Expectations suites of
transforms/contract/suites.py) and the reasons ingestion gives a file (`INGEST_RULES`: `ING.*`).

A file that is refused, skipped or replaced before or while it is read (`transforms/ingest/`) is
recorded with one of these rule ids beside its English reason: the place that refuses it names the
rule (`SubmissionRejected(reason, rule=...)`, `LandedFileRefused`, a landing `Refusal`), the
manifest keeps it (`ops.manifest.reason_rule_id`), and feedback, the status mart and the portal read
it from there. The reason's own words give the details (line, field, size); the messages below say
what the rule means and what the office should do, in English and Vietnamese.

`message()` answers for both, so a reader of the warehouse needs one lookup for any rule id, and
none of it needs Great Expectations imported.
docs/CONTRACT_RULES.md lists every rule of both (tests/test_expectations.py checks it).
"""
from __future__ import annotations

from dataclasses import dataclass

ERROR, WARNING, INFO = "error", "warning", "info"
ROW, FILE, LOAD, REFERENCE = "row", "file", "load", "reference"  # what a contract rule judges


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
    r = RULES.get(rule_id)
    return (r.message_en, r.message_vi, r.column) if r else None


# ---------------------------------------------------------------- the contract's rules

@dataclass(frozen=True)
class Rule:
    rule_id: str
    severity: str  # ERROR blocks (the row, the file, the load or the run), WARNING is reported
    column: str | None  # the column an officer should look at in the submitted file
    message_en: str
    message_vi: str
    scope: str = ROW  # row | file | load | reference

    @property
    def dataset(self) -> str:
        return {"ENR": "enrollment", "PLC": "placements", "REF": "reference"}[self.rule_id.split(".")[0]]


_R = Rule
RULES: dict[str, Rule] = {r.rule_id: r for r in (
    # --- enrollment rows ---
    _R("ENR.university_code.registry", ERROR, "university_code", "University code is not in the university registry.", "Mã trường không có trong danh mục các trường."),
    _R("ENR.term.format", ERROR, "term", "Term must look like 2024-1 (start year, then semester 1 or 2).", "Học kỳ phải có dạng 2024-1 (năm bắt đầu, rồi học kỳ 1 hoặc 2)."),
    _R("ENR.student_key.present", ERROR, "student_key", "Student number is missing.", "Thiếu mã số sinh viên."),
    _R("ENR.cell.error", ERROR, "cell_error", "A cell of this row holds a spreadsheet error (such as #DIV/0!, #N/A or #REF!) instead of a value; fix the formula or type the value.", "Một ô của dòng này chứa lỗi bảng tính (như #DIV/0!, #N/A hoặc #REF!) thay vì giá trị; hãy sửa công thức hoặc nhập giá trị."),
    _R("ENR.student_id.unreadable", ERROR, "student_id", "The student number cannot be matched to a student: it contains a letter from another alphabet that looks like a Latin one (e.g. Cyrillic 'В' for 'B'), or it has no digit or is shaped like a name, a date or an email (a value from another column); check the column and retype it.", "Mã số sinh viên không đối chiếu được với sinh viên: chứa chữ cái của bảng chữ cái khác trông giống chữ Latinh (ví dụ chữ 'В' Kirin thay cho 'B'), hoặc không có chữ số hay có dạng họ tên, ngày tháng, email (giá trị của cột khác); hãy kiểm tra cột và gõ lại."),
    _R("ENR.national_id.unreadable", ERROR, "national_id", "The national id is not 12 digits (CCCD) or 9 digits (CMND): it holds letters or other characters (a letter that looks like a digit or comes from another alphabet, a name, a date or a phone number in the wrong column), has another number of digits, or Excel wrote it in scientific notation and lost digits; check the column and send the id as text.", "Số CCCD/CMND không phải 12 chữ số (CCCD) hoặc 9 chữ số (CMND): có chữ cái hoặc ký tự khác (chữ cái trông giống chữ số hoặc thuộc bảng chữ cái khác, họ tên, ngày tháng hay số điện thoại nằm nhầm cột), có số chữ số khác, hoặc Excel ghi dưới dạng số mũ và làm mất chữ số; hãy kiểm tra cột và gửi số dưới dạng văn bản."),
    _R("ENR.student_key.unique", ERROR, "student_key", "The same student appears more than once in this submission.", "Một sinh viên xuất hiện nhiều lần trong cùng một tệp nộp."),
    _R("ENR.gender.present", ERROR, "gender", "Gender is missing or not recognised (use Nam/Nữ, Male/Female or M/F/X).", "Thiếu giới tính hoặc không nhận dạng được (dùng Nam/Nữ, Male/Female hoặc M/F/X)."),
    _R("ENR.gender.recognised", ERROR, "gender", "Gender must be M, F or X.", "Giới tính phải là M, F hoặc X."),
    _R("ENR.programme_code.present", ERROR, "programme_code", "Programme (major) code is missing.", "Thiếu mã ngành đào tạo."),
    _R("ENR.programme_code.catalogue", ERROR, "programme_code", "Programme code is not in the MOET programme catalogue.", "Mã ngành không có trong danh mục ngành của Bộ GD&ĐT."),
    _R("ENR.degree_level.present", ERROR, "degree_level", "Degree level is missing or not recognised.", "Thiếu trình độ đào tạo hoặc không nhận dạng được."),
    _R("ENR.degree_level.recognised", ERROR, "degree_level", "Degree level must be bachelor, engineer, master or doctor.", "Trình độ đào tạo phải là cử nhân, kỹ sư, thạc sĩ hoặc tiến sĩ."),
    _R("ENR.degree_level.programme_level", ERROR, "degree_level", "Degree level does not match the programme code (codes starting 7 are bachelor/engineer, 8 master, 9 doctor).", "Trình độ đào tạo không khớp với mã ngành (mã bắt đầu bằng 7 là cử nhân/kỹ sư, 8 là thạc sĩ, 9 là tiến sĩ)."),
    _R("ENR.intake_year.present", ERROR, "intake_year", "Intake year is missing or could not be read.", "Thiếu năm nhập học hoặc không đọc được."),
    _R("ENR.intake_year.range", ERROR, "intake_year", "Intake year is earlier than 1990.", "Năm nhập học sớm hơn năm 1990."),
    _R("ENR.intake_year.not_future", ERROR, "intake_year", "Intake year is after the reported term; an intake cannot be in the future.", "Năm nhập học sau học kỳ báo cáo; không thể nhập học trong tương lai."),
    _R("ENR.intake_year.max_duration", WARNING, "intake_year", "Student started more than twice the normal length of the degree ago (beyond the usual maximum study time).", "Sinh viên nhập học đã quá hai lần thời gian đào tạo chuẩn (vượt thời gian học tối đa thông thường)."),
    _R("ENR.intake_year.unchanged", WARNING, "intake_year", "Intake year differs from the one reported for this student in an earlier term.", "Năm nhập học khác với năm đã báo cáo cho sinh viên này ở học kỳ trước."),
    _R("ENR.study_year.present", ERROR, "study_year", "Year of study is missing.", "Thiếu thông tin sinh viên năm thứ mấy."),
    _R("ENR.study_year.range", ERROR, "study_year", "Year of study must be between 1 and 7.", "Sinh viên năm thứ phải từ 1 đến 7."),
    _R("ENR.study_year.since_intake", ERROR, "study_year", "Year of study is higher than the number of years since intake.", "Năm học cao hơn số năm kể từ khi nhập học."),
    _R("ENR.study_year.long_running", WARNING, "study_year", "Student is more than two years past the normal length of the degree.", "Sinh viên đã học quá thời gian chuẩn của chương trình hơn hai năm."),
    _R("ENR.study_year.not_decreasing", WARNING, "study_year", "Year of study is lower than in the student's previous term in this programme.", "Năm học thấp hơn so với học kỳ trước của sinh viên trong cùng ngành."),
    _R("ENR.status.present", ERROR, "status", "Study status is missing or not recognised.", "Thiếu tình trạng học tập hoặc không nhận dạng được."),
    _R("ENR.status.recognised", ERROR, "status", "Status must be studying, graduated, dropped out, on leave or transferred.", "Tình trạng phải là đang học, đã tốt nghiệp, thôi học, bảo lưu hoặc chuyển trường."),
    _R("ENR.status.after_graduation", ERROR, "status", "Student was already reported as graduated from this programme in an earlier term and cannot appear again.", "Sinh viên đã được báo cáo tốt nghiệp ngành này ở học kỳ trước nên không thể xuất hiện lại."),
    _R("ENR.status.readmitted", WARNING, "status", "Student was reported as dropped out or transferred in an earlier term and is studying again; confirm the readmission.", "Sinh viên đã được báo cáo thôi học hoặc chuyển trường ở học kỳ trước nay lại đang học; hãy xác nhận việc nhập học lại."),
    _R("ENR.gpa.range", ERROR, "gpa", "GPA is outside the 0–4 scale (0–10 before conversion).", "Điểm trung bình tích lũy nằm ngoài thang 0–4 (thang 0–10 trước khi quy đổi)."),
    _R("ENR.birth_year.plausible", WARNING, "birth_year", "Birth year gives an age under 15 or over 70 in this term.", "Năm sinh cho thấy tuổi dưới 15 hoặc trên 70 trong học kỳ này."),
    # --- enrollment submissions (one row per file) ---
    _R("ENR.file.has_rows", ERROR, None, "The file has no student rows.", "Tệp không có dòng sinh viên nào.", FILE),
    _R("ENR.file.mostly_invalid", ERROR, None, "More than half of the rows break an error rule, so the file is rejected as a whole; fix it and send it again.", "Hơn một nửa số dòng vi phạm quy tắc lỗi nên cả tệp bị từ chối; hãy sửa và gửi lại.", FILE),
    _R("ENR.file.quarantine_share", WARNING, None, "More than 5% of the rows were quarantined for errors.", "Hơn 5% số dòng bị cách ly do lỗi.", FILE),
    _R("ENR.file.rows_drop", WARNING, None, "The number of students fell by more than 30% compared with the university's previous accepted term.", "Số sinh viên giảm hơn 30% so với học kỳ được chấp nhận gần nhất của trường.", FILE),
    _R("ENR.file.rows_growth", WARNING, None, "The number of students more than doubled compared with the university's previous accepted term.", "Số sinh viên tăng hơn gấp đôi so với học kỳ được chấp nhận gần nhất của trường.", FILE),
    _R("ENR.file.status_shares", WARNING, None, "The share of a study status (among students who have not graduated) moved by more than 15 percentage points since the previous accepted term.", "Tỷ lệ một tình trạng học tập (trong số sinh viên chưa tốt nghiệp) thay đổi hơn 15 điểm phần trăm so với học kỳ được chấp nhận gần nhất.", FILE),
    _R("ENR.file.programme_shares", WARNING, None, "The share of a programme moved by more than 20 percentage points since the previous accepted term.", "Tỷ lệ sinh viên của một ngành thay đổi hơn 20 điểm phần trăm so với học kỳ được chấp nhận gần nhất.", FILE),
    _R("ENR.file.graduates_vs_final_year", WARNING, None, "More graduates are reported than there were final-year students in the previous accepted term.", "Số sinh viên tốt nghiệp nhiều hơn số sinh viên năm cuối của học kỳ được chấp nhận gần nhất.", FILE),
    _R("ENR.file.unaccounted_students", WARNING, None, "More than 10% of the students who were studying or on leave in the previous accepted term are missing, without a graduation, drop-out or transfer.", "Hơn 10% sinh viên đang học hoặc bảo lưu ở học kỳ được chấp nhận gần nhất không còn trong tệp mà không có thông tin tốt nghiệp, thôi học hay chuyển trường.", FILE),
    # --- enrollment load accounting ---
    _R("ENR.totals.by_programme", ERROR, "programme_code", "Students loaded plus quarantined must equal students sent, for every programme.", "Số sinh viên được nạp cộng số bị cách ly phải bằng số đã gửi, theo từng ngành.", LOAD),
    _R("ENR.totals.by_status", ERROR, "status", "Students loaded plus quarantined must equal students sent, for every status.", "Số sinh viên được nạp cộng số bị cách ly phải bằng số đã gửi, theo từng tình trạng học tập.", LOAD),
    # --- placement rows ---
    _R("PLC.round.present", ERROR, "round", "Round is missing.", "Thiếu đợt thực tập."),
    _R("PLC.round.format", ERROR, "round", "Round must look like 2025H2 (year, then H1 or H2).", "Đợt thực tập phải có dạng 2025H2 (năm, rồi H1 hoặc H2)."),
    _R("PLC.university_code.present", ERROR, "university_code", "University code is missing.", "Thiếu mã trường."),
    _R("PLC.university_code.registry", ERROR, "university_code", "University code is not in the university registry.", "Mã trường không có trong danh mục các trường."),
    _R("PLC.student_key.present", ERROR, "student_key", "Student number is missing.", "Thiếu mã số sinh viên."),
    _R("PLC.cell.error", ERROR, "cell_error", "A cell of this row holds a spreadsheet error (such as #DIV/0!, #N/A or #REF!) instead of a value; fix the formula or type the value.", "Một ô của dòng này chứa lỗi bảng tính (như #DIV/0!, #N/A hoặc #REF!) thay vì giá trị; hãy sửa công thức hoặc nhập giá trị."),
    _R("PLC.student_id.unreadable", ERROR, "student_id", "The student number cannot be matched to a student: it contains a letter from another alphabet that looks like a Latin one (e.g. Cyrillic 'В' for 'B'), or it has no digit or is shaped like a name, a date or an email (a value from another column); check the column and retype it.", "Mã số sinh viên không đối chiếu được với sinh viên: chứa chữ cái của bảng chữ cái khác trông giống chữ Latinh (ví dụ chữ 'В' Kirin thay cho 'B'), hoặc không có chữ số hay có dạng họ tên, ngày tháng, email (giá trị của cột khác); hãy kiểm tra cột và gõ lại."),
    _R("PLC.student.once_per_round", ERROR, "student_key", "The same student is placed more than once in this round.", "Một sinh viên được xếp thực tập nhiều lần trong cùng một đợt."),
    _R("PLC.host_code.present", ERROR, "host_code", "Host company code is missing.", "Thiếu mã doanh nghiệp tiếp nhận."),
    _R("PLC.host_code.registry", ERROR, "host_code", "Host company is not in the list of Korean hosts.", "Doanh nghiệp tiếp nhận không có trong danh sách doanh nghiệp Hàn Quốc."),
    _R("PLC.track.present", ERROR, "track", "Track is missing.", "Thiếu lĩnh vực thực tập."),
    _R("PLC.track.valid", ERROR, "track", "Track must be design, fabrication, packaging_testing or equipment.", "Lĩnh vực phải là thiết kế, chế tạo, đóng gói–kiểm thử hoặc thiết bị."),
    _R("PLC.outcome.present", ERROR, "outcome", "Outcome is missing.", "Thiếu kết quả thực tập."),
    _R("PLC.outcome.valid", ERROR, "outcome", "Outcome must be completed or withdrew.", "Kết quả phải là hoàn thành (completed) hoặc rút lui (withdrew)."),
    _R("PLC.semiconductor_job.valid", ERROR, "semiconductor_job", "Semiconductor job must be yes, no or empty.", "Việc làm bán dẫn phải là yes, no hoặc để trống."),
    _R("PLC.semiconductor_job.only_when_completed", WARNING, "semiconductor_job", "A semiconductor job is recorded for a student who withdrew; record it only after completion.", "Có ghi việc làm bán dẫn cho sinh viên đã rút lui; chỉ ghi khi đã hoàn thành thực tập."),
    # --- placement submissions ---
    _R("PLC.file.has_rows", ERROR, None, "The placement file has no rows.", "Tệp thực tập không có dòng nào.", FILE),
    _R("PLC.file.mostly_invalid", ERROR, None, "More than half of the rows break an error rule, so the file is rejected as a whole; fix it and send it again.", "Hơn một nửa số dòng vi phạm quy tắc lỗi nên cả tệp bị từ chối; hãy sửa và gửi lại.", FILE),
    _R("PLC.file.quarantine_share", WARNING, None, "More than 5% of the rows were quarantined for errors.", "Hơn 5% số dòng bị cách ly do lỗi.", FILE),
    # --- reference data (data/reference/*.csv), checked before every run uses it ---
    _R("REF.universities.code_present", ERROR, "university_code", "University code is missing.", "Thiếu mã trường.", REFERENCE),
    _R("REF.universities.code_format", ERROR, "university_code", "University code must be 2–12 capital letters or digits.", "Mã trường phải gồm 2–12 chữ in hoa hoặc chữ số.", REFERENCE),
    _R("REF.universities.code_unique", ERROR, "university_code", "University code is used more than once.", "Mã trường bị trùng.", REFERENCE),
    _R("REF.universities.name_present", ERROR, "name_vi", "University name is missing.", "Thiếu tên trường.", REFERENCE),
    _R("REF.universities.participates_valid", ERROR, "participates", "participates must be true or false.", "Cột participates phải là true hoặc false.", REFERENCE),
    _R("REF.programmes.code_present", ERROR, "programme_code", "Programme code is missing.", "Thiếu mã ngành.", REFERENCE),
    _R("REF.programmes.code_format", ERROR, "programme_code", "Programme code must be a 7-digit MOET major code.", "Mã ngành phải là mã 7 chữ số của Bộ GD&ĐT.", REFERENCE),
    _R("REF.programmes.code_unique", ERROR, "programme_code", "Programme code is listed more than once.", "Mã ngành bị trùng.", REFERENCE),
    _R("REF.programmes.level_valid", ERROR, "level", "Level must be undergraduate, master or doctor.", "Bậc đào tạo phải là undergraduate, master hoặc doctor.", REFERENCE),
    _R("REF.programmes.level_matches_code", ERROR, "level", "Level does not match the first digit of the code (7 undergraduate, 8 master, 9 doctor).", "Bậc đào tạo không khớp với chữ số đầu của mã ngành (7 đại học, 8 thạc sĩ, 9 tiến sĩ).", REFERENCE),
    _R("REF.programmes.track_valid", ERROR, "track", "Track must be design, fabrication, packaging_testing or equipment.", "Lĩnh vực phải là design, fabrication, packaging_testing hoặc equipment.", REFERENCE),
    _R("REF.programmes.normal_years_range", ERROR, "normal_years", "Normal length must be a whole number of years from 1 to 7.", "Thời gian đào tạo chuẩn phải là số năm nguyên từ 1 đến 7.", REFERENCE),
    _R("REF.hosts.code_present", ERROR, "host_code", "Host code is missing.", "Thiếu mã đơn vị tiếp nhận.", REFERENCE),
    _R("REF.hosts.code_unique", ERROR, "host_code", "Host code is listed more than once.", "Mã đơn vị tiếp nhận bị trùng.", REFERENCE),
    _R("REF.hosts.type_valid", ERROR, "host_type", "Host type must be company, research_centre, university or domestic_lab.", "Loại đơn vị phải là company, research_centre, university hoặc domestic_lab.", REFERENCE),
    _R("REF.hosts.tracks_valid", ERROR, "tracks", "Tracks must be one or more valid tracks separated by |.", "Lĩnh vực phải là một hoặc nhiều lĩnh vực hợp lệ, ngăn cách bởi dấu |.", REFERENCE),
    _R("REF.host_slots.round_format", ERROR, "round", "Round must look like 2026H1.", "Đợt phải có dạng 2026H1.", REFERENCE),
    _R("REF.host_slots.host_exists", ERROR, "host_code", "Host is not in hosts.csv.", "Đơn vị tiếp nhận không có trong hosts.csv.", REFERENCE),
    _R("REF.host_slots.track_offered", ERROR, "track", "The host does not offer this track (see its tracks in hosts.csv).", "Đơn vị tiếp nhận không có lĩnh vực này (xem cột tracks trong hosts.csv).", REFERENCE),
    _R("REF.host_slots.slots_non_negative", ERROR, "slots", "Slots must be a whole number, 0 or more.", "Số chỗ thực tập phải là số nguyên không âm.", REFERENCE),
    _R("REF.host_slots.unique", ERROR, "host_code", "The same round, host and track is listed more than once.", "Cùng một đợt, đơn vị và lĩnh vực bị liệt kê nhiều lần.", REFERENCE),
    _R("REF.targets.dimension_valid", ERROR, "dimension", "Dimension must be total, track_group or degree_level.", "Chiều chỉ tiêu phải là total, track_group hoặc degree_level.", REFERENCE),
    _R("REF.targets.target_non_negative", ERROR, "target", "Target must be a whole number, 0 or more.", "Chỉ tiêu phải là số nguyên không âm.", REFERENCE),
    _R("REF.targets.unique", ERROR, "category", "The same year, dimension and category is listed more than once.", "Cùng năm, chiều và hạng mục bị liệt kê nhiều lần.", REFERENCE),
    _R("REF.targets.dimensions_sum_to_total", ERROR, "target", "The categories of each dimension must add up to the year's total target.", "Các hạng mục của mỗi chiều phải cộng lại bằng tổng chỉ tiêu của năm.", REFERENCE),
)}
