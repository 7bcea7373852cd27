/* ckanext-webhooks: copy buttons, and focus on a form's error summary. */

/* A button that copies the text of the element named by data-module-target,
   and says so to screen readers (through #copy-status, if the page has it). */
ckan.module("webhooks-copy", function ($) {
  return {
    options: { target: null },
    initialize: function () {
      this.el.on("click", this._copy.bind(this));
    },
    _copy: function () {
      var source = document.getElementById(this.options.target);
      if (!source) {
        return;
      }
      var text = source.textContent.trim();
      var done = this._done.bind(this);
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, this._select.bind(this, source));
      } else {
        this._select(source);
      }
    },
    _select: function (source) {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      if (document.execCommand && document.execCommand("copy")) {
        this._done();
      }
    },
    _done: function () {
      this.el.attr("data-copied", "true");
      this.el.find(".fa").removeClass("fa-copy").addClass("fa-check");
      var status = document.getElementById("copy-status");
      if (status) {
        status.textContent = this.el.attr("aria-label") + ": " + this._("copied");
      }
    }
  };
});

/* A form's error summary takes the focus, so that keyboard and screen reader
   users learn at once what went wrong, and its links lead to the fields. */
ckan.module("webhooks-error-summary", function ($) {
  return {
    initialize: function () {
      this.el.attr("tabindex", "-1");
      this.el.trigger("focus");
    }
  };
});
