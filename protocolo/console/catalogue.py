"""Every word the console shows, Portuguese first, English second: one catalogue.

Templates call ``t("key")`` (or ``t("key", n=3)`` for a formatted message); a key missing
from the catalogue raises (tests/unit/test_console_catalogue.py checks every key the
templates name, in both languages), never shows a raw key.
"""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("pt", "en")
DEFAULT_LANGUAGE = "pt"
LANGUAGE_NAMES = {"pt": "Português", "en": "English"}

MESSAGES: dict[str, tuple[str, str]] = {
    # chrome
    "app.name": ("Protocolo", "Protocolo"),
    "app.tagline": ("Console de disputas", "Dispute console"),
    "nav.label": ("Navegação principal", "Main navigation"),
    "nav.search": ("Buscar atendimentos", "Search contacts"),
    "nav.queue": ("Fila de pedidos", "Request queue"),
    "nav.approvals": ("Aprovações", "Approvals"),
    "nav.my_requests": ("Meus pedidos", "My requests"),
    "nav.new_request": ("Pedir gravação", "Ask for a recording"),
    "nav.logout": ("Sair", "Log out"),
    "nav.skip": ("Pular para o conteúdo", "Skip to content"),
    "nav.signed_in_as": ("Conectado como {user} ({role})", "Signed in as {user} ({role})"),
    "lang.switch": ("Idioma", "Language"),
    "home.title": ("Início", "Home"),
    "home.nothing": ("Seu papel não tem páginas no console; use a API.",
                     "Your role has no console pages; use the API."),
    # roles
    "role.analyst": ("analista", "analyst"),
    "role.supervisor": ("supervisor", "supervisor"),
    "role.compliance": ("compliance", "compliance"),
    "role.regulator": ("regulador", "regulator"),
    "role.service": ("serviço", "service"),
    "role.customer": ("cliente", "customer"),
    # login
    "login.title": ("Entrar", "Log in"),
    "login.name": ("Usuário", "User name"),
    "login.password": ("Senha", "Password"),
    "login.submit": ("Entrar", "Log in"),
    "login.wrong": ("Usuário ou senha incorretos.", "Wrong user name or password."),
    "login.too_many": ("Muitas tentativas; tente de novo em {seconds} s.",
                       "Too many attempts; try again in {seconds} s."),
    "login.required": ("Entre para continuar.", "Log in to continue."),
    "logout.done": ("Você saiu.", "You are logged out."),
    # errors
    "error.title": ("Não foi possível", "That did not work"),
    "error.forbidden": ("Seu papel não permite esta ação.", "Your role may not do this."),
    "error.field": ("Campo {field}: {message}", "Field {field}: {message}"),
    "error.not_found": ("Não encontrado.", "Not found."),
    # search
    "search.title": ("Buscar atendimentos", "Search contacts"),
    "search.protocol": ("Número de protocolo", "Protocol number"),
    "search.cpf": ("CPF", "CPF"),
    "search.customer_code": ("Código do cliente", "Customer code"),
    "search.from": ("Aberto a partir de", "Opened from"),
    "search.to": ("Aberto até", "Opened until"),
    "search.channel": ("Canal", "Channel"),
    "search.any": ("Qualquer", "Any"),
    "search.agent": ("Atendente (ID)", "Agent (ID)"),
    "search.purpose": ("Finalidade da consulta", "Purpose of the search"),
    "search.purpose_hint": ("Obrigatória ao buscar por CPF ou código do cliente: a consulta fica "
                            "registrada no livro-razão.",
                            "Required when searching by CPF or customer code: the search is recorded "
                            "on the ledger."),
    "search.submit": ("Buscar", "Search"),
    "search.results": ("{total} atendimento(s) encontrado(s)", "{total} contact(s) found"),
    "search.none": ("Nenhum atendimento encontrado.", "No contact found."),
    "search.opened": ("Aberto em", "Opened"),
    "search.service": ("Serviço", "Service"),
    "search.flags": ("Conformidade", "Compliance"),
    "search.next": ("Próxima página", "Next page"),
    "search.previous": ("Página anterior", "Previous page"),
    # contact
    "contact.title": ("Atendimento {number}", "Contact {number}"),
    # the verified read: what this page shows, checked against the signed log
    "verify.title": ("Conferência com o registro assinado", "Checked against the signed log"),
    "verify.verified": ("VERIFICADO", "VERIFIED"),
    "verify.pending": ("VERIFICADO ATÉ O ÚLTIMO CHECKPOINT", "VERIFIED UP TO THE NEWEST CHECKPOINT"),
    "verify.mismatch": ("DIVERGÊNCIA", "MISMATCH"),
    "verify.unverified": ("NÃO VERIFICADO", "NOT VERIFIED"),
    "verify.verified_text": ("Os {events} eventos deste atendimento estão provados no registro assinado "
                             "({checkpoints}) e a página concorda com eles.",
                             "The {events} events of this contact are proven in the signed log "
                             "({checkpoints}) and this page agrees with them."),
    "verify.pending_text": ("{events} evento(s) provados ({checkpoints}); {pending} evento(s) mais novos "
                            "ainda aguardam o próximo checkpoint.",
                            "{events} event(s) proven ({checkpoints}); {pending} newer event(s) still "
                            "await the next checkpoint."),
    "verify.mismatch_text": ("Os dados do banco divergem do registro assinado. Esta página mostra os "
                             "valores verificados; os valores alterados no banco são:",
                             "The database differs from the signed log. This page shows the verified "
                             "values; the values altered in the database are:"),
    "verify.altered": ("{table}.{column} ({row}): o banco mostra {view} (alterado); o registro assinado "
                       "diz {verified}",
                       "{table}.{column} ({row}): the database shows {view} (altered); the signed log "
                       "says {verified}"),
    "verify.unverified_text": ("Não foi possível conferir: {why}", "Could not be checked: {why}"),
    "contact.summary": ("Resumo", "Summary"),
    "contact.subject": ("Assunto", "Subject"),
    "contact.outcome": ("Desfecho", "Outcome"),
    "contact.closed": ("Encerrado em", "Closed"),
    "contact.profile": ("Perfil de política", "Policy profile"),
    "contact.masked": ("Dados pessoais ocultos.", "Personal data masked."),
    "contact.customer": ("Cliente", "Customer"),
    "contact.erased": ("Dados do cliente apagados (LGPD).", "Customer data erased (LGPD)."),
    "contact.unmask": ("Mostrar dados pessoais", "Show personal data"),
    "contact.unmask_purpose": ("Finalidade (registrada)", "Purpose (recorded)"),
    "contact.compliance": ("Conformidade", "Compliance"),
    "contact.rule": ("Regra", "Rule"),
    "contact.source": ("Fonte", "Source"),
    "contact.result": ("Resultado", "Result"),
    "contact.met": ("Cumprida", "Met"),
    "contact.broken": ("Descumprida", "Broken"),
    "contact.pending": ("Sem dados ainda", "No data yet"),
    "contact.timeline": ("Linha do tempo", "Timeline"),
    "contact.when": ("Quando", "When"),
    "contact.event": ("Evento", "Event"),
    "contact.position": ("Posição no livro-razão", "Ledger position"),
    "contact.recordings": ("Gravações", "Recordings"),
    "contact.no_recordings": ("Nenhuma gravação.", "No recording."),
    "contact.recording": ("Gravação", "Recording"),
    "contact.captured": ("Capturada em", "Captured"),
    "contact.status": ("Situação", "Status"),
    "contact.retain_until": ("Guardar até", "Retain until"),
    "contact.holds": ("Retenções judiciais", "Legal holds"),
    "contact.no_holds": ("Nenhuma retenção judicial.", "No legal hold."),
    "contact.hold_case": ("Processo", "Case"),
    "contact.hold_placed": ("Colocada em", "Placed"),
    "contact.hold_released": ("Liberada em", "Released"),
    "contact.held": ("sob retenção judicial", "under legal hold"),
    "contact.requests": ("Pedidos de gravação e histórico", "Recording and history requests"),
    "contact.no_requests": ("Nenhum pedido.", "No request."),
    "contact.proof": ("Baixar prova de atendimento", "Download proof of service"),
    "contact.proof_hint": ("Pacote com a prova criptográfica do atendimento (verificável sem a empresa); o download é registrado.",
                           "A bundle with the cryptographic proof of the contact (verifiable without the company); the download is recorded."),
    "contact.early_deletion": ("Pedir exclusão antecipada", "Request early deletion"),
    "contact.deletion_reason": ("Motivo da exclusão", "Reason for deletion"),
    "contact.deletion_asked": ("Exclusão antecipada pedida; aguarda a aprovação de outra pessoa.",
                               "Early deletion requested; it waits for another person's approval."),
    "contact.lag": ("Projeção atrasada em {lag} evento(s) do livro-razão.",
                    "The projection is {lag} ledger event(s) behind."),
    # compliance rules (text filled with the profile in force; source: the profile's)
    "rule.protocol_disclosed_at_start": (
        "Informar o número de protocolo ao consumidor no início do atendimento (em até {seconds} s).",
        "Give the customer the protocol number at the start of the contact (within {seconds} s)."),
    "rule.recording_notice_at_start": (
        "Avisar que a ligação é gravada no início do atendimento (em até {seconds} s).",
        "Tell the customer the call is recorded at the start of the contact (within {seconds} s)."),
    "rule.protocol_confirmed_in_time": (
        "Confirmar o número de protocolo por escrito em até {hours} h.",
        "Confirm the protocol number in writing within {hours} h."),
    "flag.protocol_disclosed_at_start": ("Protocolo no início", "Protocol at start"),
    "flag.recording_notice_at_start": ("Aviso de gravação", "Recording notice"),
    "flag.protocol_confirmed_in_time": ("Confirmação no prazo", "Confirmed in time"),
    "recording.status.retained": ("Guardada", "Retained"),
    "recording.status.deleted": ("Apagada", "Deleted"),
    # requests
    "request.id": ("Pedido", "Request"),
    "request.kind": ("Tipo", "Kind"),
    "request.kind.RECORDING": ("Gravação", "Recording"),
    "request.kind.HISTORY": ("Histórico", "History"),
    "request.requested": ("Pedido em", "Requested"),
    "request.due": ("Prazo", "Deadline"),
    "request.left": ("Tempo restante", "Time left"),
    "request.status": ("Situação", "Status"),
    "request.status.requested": ("Recebido", "Received"),
    "request.status.located": ("Localizado", "Located"),
    "request.status.fulfilled": ("Entregue", "Delivered"),
    "request.status.rejected": ("Recusado", "Rejected"),
    "request.overdue": ("ATRASADO", "OVERDUE"),
    "request.overdue_by": ("atrasado há {span}", "overdue by {span}"),
    "request.remaining": ("faltam {span}", "{span} left"),
    "request.done": ("concluído", "closed"),
    "request.protocol": ("Protocolo", "Protocol"),
    "request.none_protocol": ("(sem protocolo: pelo CPF e data)", "(no protocol: by CPF and date)"),
    "queue.title": ("Fila de pedidos por prazo", "Request queue by deadline"),
    "queue.none": ("Nenhum pedido em aberto.", "No open request."),
    "queue.summary": ("{total} pedido(s) em aberto, {overdue} atrasado(s)",
                      "{total} open request(s), {overdue} overdue"),
    # approvals
    "approvals.title": ("Aprovações pendentes", "Pending approvals"),
    "approvals.none": ("Nada aguardando decisão.", "Nothing waiting for a decision."),
    "approvals.action": ("Ação", "Action"),
    "approvals.action.EARLY_DELETION": ("Exclusão antecipada de gravação", "Early deletion of a recording"),
    "approvals.action.CUSTOMER_ERASURE": ("Apagamento dos dados do cliente", "Erasure of the customer's data"),
    "approvals.asked_by": ("Pedido por", "Asked by"),
    "approvals.reason": ("Motivo", "Reason"),
    "approvals.target": ("Alvo", "Target"),
    "approvals.comment": ("Comentário (opcional)", "Comment (optional)"),
    "approvals.deny_reason": ("Motivo da recusa", "Reason for denying"),
    "approvals.grant": ("Aprovar", "Approve"),
    "approvals.deny": ("Recusar", "Deny"),
    "approvals.own": ("Você fez este pedido: outra pessoa precisa decidir.",
                      "You asked for this: another person must decide."),
    "approvals.cannot_decide": ("Seu papel pode ver, mas não decidir.", "Your role may see, not decide."),
    "approvals.granted": ("Aprovado e executado.", "Approved and carried out."),
    "approvals.denied": ("Recusado.", "Denied."),
    "approvals.self": ("Ninguém aprova o próprio pedido: outra pessoa precisa decidir.",
                       "Nobody approves their own request: another person must decide."),
    # customer channel
    "customer.new_title": ("Pedir a gravação do meu atendimento", "Ask for the recording of my call"),
    "customer.intro": ("Você tem direito à gravação do seu atendimento, entregue em até 10 dias. "
                       "Não é preciso justificar.",
                       "You are entitled to the recording of your call, delivered within 10 days. "
                       "No justification is needed."),
    "customer.by_protocol": ("Tenho o número de protocolo", "I have the protocol number"),
    "customer.by_date": ("Não tenho o protocolo: pelo meu CPF e a data", "I do not have it: by my CPF and the date"),
    "customer.date": ("Data do atendimento", "Date of the call"),
    "customer.delivery": ("Como quer receber", "How to receive it"),
    "customer.delivery.EMAIL": ("E-mail", "Email"),
    "customer.delivery.APP": ("Aplicativo", "App"),
    "customer.delivery.WEB": ("Nesta página", "On this page"),
    "customer.submit": ("Enviar pedido", "Send request"),
    "customer.either": ("Informe o número de protocolo, ou o CPF e a data.",
                        "Give the protocol number, or the CPF and the date."),
    "customer.created": ("Pedido recebido. O prazo de entrega começou agora.",
                         "Request received. The delivery clock starts now."),
    "customer.proof_title": ("Todos os meus atendimentos (LGPD)", "All my contacts (LGPD)"),
    "customer.proof": ("Baixar a prova de todos os meus atendimentos",
                       "Download the proof of all my contacts"),
    "customer.proof_hint": ("Um pacote com cada atendimento e pedido seu, com a prova criptográfica de que "
                            "nenhum falta (verificável sem a empresa); o download é registrado.",
                            "One bundle with every contact and request of yours, with the cryptographic "
                            "proof that none is missing (verifiable without the company); the download is recorded."),
    "customer.list_title": ("Meus pedidos", "My requests"),
    "customer.none": ("Você ainda não fez pedidos.", "You have not asked for anything yet."),
    "customer.follow_title": ("Acompanhar pedido", "Follow a request"),
    "customer.too_many": ("Muitos pedidos seguidos; tente de novo em {seconds} s.",
                          "Too many requests in a row; try again in {seconds} s."),
    "customer.window": ("Período", "Window"),
    "customer.delivered": ("Entregue em", "Delivered"),
    "customer.rejected_reason": ("Motivo da recusa", "Reason for refusal"),
    # time spans
    "span.days": ("{d} d {h} h", "{d} d {h} h"),
    "span.hours": ("{h} h {m} min", "{h} h {m} min"),
    "span.minutes": ("{m} min", "{m} min"),
}


def language_of(value: str | None) -> str:
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


def translator(language: str) -> Callable[..., str]:
    """``t(key, **values)`` in ``language``."""
    column = LANGUAGES.index(language_of(language))

    def t(key: str, **values: object) -> str:
        text = MESSAGES[key][column]
        return text.format(**values) if values else text

    return t


def span(seconds: int, t: Callable[..., str]) -> str:
    """A duration for people: days and hours, hours and minutes, or minutes."""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    if days:
        return t("span.days", d=days, h=hours)
    if hours:
        return t("span.hours", h=hours, m=rest // 60)
    return t("span.minutes", m=max(rest // 60, 1))
